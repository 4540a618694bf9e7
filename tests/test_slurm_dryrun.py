"""The Slurm profile, dry run (no Slurm needed): what each stage would ask sbatch for."""

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

from llmstack.plan import plan_runs

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("snakemake_executor_plugin_slurm") is None,
    reason='SLURM executor plugin missing: pip install -e ".[slurm]"',
)


def _resources(out: str) -> dict[str, dict[str, str]]:
    """rule name -> its printed resources (first job of each rule)."""
    found = {}
    for rule, body in re.findall(r"^rule (\w+):\n(.*?)(?=^Shell command|^rule |\Z)", out, re.M | re.S):
        m = re.search(r"resources: (.*)", body)
        if m and rule not in found:
            pairs = re.findall(r"(\w+)=((?:\{.*?\}\})|[^,]*)", m.group(1))
            found[rule] = {k: v for k, v in pairs}
    return found


def test_two_nodes_eight_gpus_for_pretrain(tmp_path):
    for name in ("Snakefile", "workflow", "configs", "profiles"):
        (tmp_path / name).symlink_to(ROOT / name)
    proc = subprocess.run(
        ["snakemake", "-n", "--profile", "profiles/slurm", "--config",
         "overrides=pretrain.nodes=2 pretrain.gpus_per_node=8"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    res = _resources(proc.stdout)
    pre = res["pretrain"]
    asked = (pre["nodes"], pre["tasks"], pre["mpi"], pre["gres"], pre["tasks_per_gpu"])
    assert asked == ("2", "2", "srun", "gpu:8", "0")
    assert "cpus_per_task" in pre and "runtime" in pre and "mem_mb" in pre
    for rule in ("midtrain", "sft", "rl"):  # defaults: one node, no GPU asked, no mpi
        assert res[rule]["nodes"] == "1" and "gres" not in res[rule] and "mpi" not in res[rule]
    for rule in ("data", "tokenizer", "eval", "base_eval", "report"):
        assert "gres" not in res[rule] and "gpu" not in res[rule] and "nodes" not in res[rule], rule
        assert "cpus_per_task" in res[rule] and "mem_mb" in res[rule]


def test_nodes_and_gpus_are_no_rerun_trigger():
    def keys(overrides):
        return {n: s.key for n, s in plan_runs(preset="tiny", overrides=overrides)[0].stages.items()}

    assert keys("") == keys("pretrain.nodes=2 pretrain.gpus_per_node=8 sft.nodes=3 rl.gpus_per_node=4")
