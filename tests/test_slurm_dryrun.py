"""The Slurm profile, dry run (no Slurm needed): what each stage would ask sbatch for."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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


class _Resources(dict):
    """A job's resources as the SLURM plugin reads them (`.get` and attributes)."""

    __getattr__ = dict.get


def sbatch_call(resources: dict[str, str]) -> str:
    """The sbatch command line the SLURM plugin builds for a job with these (printed) resources."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    typed = _Resources({k: int(v) if v.isdigit() else v for k, v in resources.items()})
    job = SimpleNamespace(resources=typed, threads=1, name="pretrain", is_group=lambda: False)
    params = dict(run_uuid="u", slurm_logfile="log", comment_str="c", account="", partition="", workdir="")
    return get_submit_command(job, params) + set_gres_string(job)


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
    sbatch = sbatch_call(pre)
    for flag in ("--nodes=2", "--gres=gpu:8", "--ntasks=2", "--signal=URG@600", "-t 1440", "--mem 128000"):
        assert flag in sbatch, sbatch
    for rule in ("midtrain", "sft", "rl"):  # defaults: one node, no GPU asked, no mpi
        assert res[rule]["nodes"] == "1" and "gres" not in res[rule] and "mpi" not in res[rule]
    for rule in ("data", "tokenizer", "eval", "base_eval", "report"):
        assert "gres" not in res[rule] and "gpu" not in res[rule] and "nodes" not in res[rule], rule
        assert "cpus_per_task" in res[rule] and "mem_mb" in res[rule]


def test_nodes_and_gpus_are_no_rerun_trigger():
    def keys(overrides):
        return {n: s.key for n, s in plan_runs(preset="tiny", overrides=overrides)[0].stages.items()}

    assert keys("") == keys("pretrain.nodes=2 pretrain.gpus_per_node=8 sft.nodes=3 rl.gpus_per_node=4")


def test_several_nodes_without_slurm_fail_in_one_line_before_any_job(tmp_path):
    for name in ("Snakefile", "workflow", "configs"):
        (tmp_path / name).symlink_to(ROOT / name)
    proc = subprocess.run(
        ["snakemake", "--cores", "1", "--config", "overrides=pretrain.nodes=2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("llmstack:")]
    assert ours == [
        "llmstack: pretrain.nodes=2 needs the Slurm executor (snakemake --profile profiles/slurm); "
        "set pretrain.nodes=1 to train on this machine"
    ]
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / ".snakemake/locks").exists()


def test_without_the_plugin_snakemake_refuses_the_profile_before_any_job(tmp_path):
    # The plugin hidden from Snakemake's plugin scan: its own argument parser rejects `executor: slurm`.
    for name in ("Snakefile", "workflow", "configs", "profiles"):
        (tmp_path / name).symlink_to(ROOT / name)
    hide = (
        "import pkgutil, sys; scan = pkgutil.iter_modules; "
        "pkgutil.iter_modules = lambda *a, **k: [m for m in scan(*a, **k) if 'slurm' not in m.name]; "
        "from snakemake.cli import main; sys.argv = ['snakemake', '--profile', 'profiles/slurm']; main()"
    )
    proc = subprocess.run([sys.executable, "-c", hide], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and not (tmp_path / "artifacts").exists()
    assert proc.stderr.strip().splitlines()[-1] == (
        "snakemake: error: argument --executor/-e: invalid choice: 'slurm' (choose from 'local', 'dryrun', 'touch')"
    )


def test_partition_checks(monkeypatch):
    from llmstack import cluster

    monkeypatch.setattr(cluster.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(cluster, "partitions", lambda: (["cpu", "gpu"], None))
    cluster.check_jobs([cluster.JobAsk("pretrain", 2, "gpu")], "slurm")  # fine
    cluster.check_jobs([cluster.JobAsk("run_manifest", 1, None, local=True)], "slurm")  # runs here
    with pytest.raises(SystemExit, match="names no Slurm partition and the cluster has no default one"):
        cluster.check_jobs([cluster.JobAsk("data", 1, None)], "slurm")
    with pytest.raises(SystemExit, match=r"partition 'big' \(rule sft\) does not exist here; partitions: cpu, gpu"):
        cluster.check_jobs([cluster.JobAsk("sft", 1, "big")], "slurm")
    monkeypatch.setattr(cluster.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="needs Slurm's commands on this host"):
        cluster.check_jobs([], "slurm")
    cluster.check_jobs([cluster.JobAsk("pretrain", 1, None)], "local")
