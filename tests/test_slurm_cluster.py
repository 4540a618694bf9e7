"""On a real Slurm (two nodes on this host, tests/slurmcluster.py): the shrunk pipeline through
profiles/slurm, pretraining on 2 nodes x 1 gloo process and warned mid-run the way a time limit
warns (Slurm signals the job's steps), compared with an uninterrupted local 2-process run."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from slurmcluster import SlurmCluster, unavailable
from stagerun import run_stage
from test_end_to_end import SMALL

from llmstack.cluster import STOP_SIGNAL
from llmstack.pipeline import STAGES

REPO = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("snakemake_executor_plugin_slurm") is None,
        reason='SLURM executor plugin missing: pip install -e ".[slurm]"',
    ),
]
# Long enough to be signalled mid-run; checkpoints only when signalled.
PRETRAIN = (
    SMALL.replace("pretrain.max_steps=8", "pretrain.max_steps=100")
    .replace("pretrain.ckpt_every=4", "pretrain.ckpt_every=0")
    .replace("pretrain.eval_every=4", "pretrain.eval_every=25")
    + " pretrain.device=cpu"
)


@pytest.fixture(scope="module")
def cluster():
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with SlurmCluster() as c:
        yield c


def workdir(tmp_path: Path) -> Path:
    tmp_path.mkdir()
    for name in ("Snakefile", "workflow", "configs", "profiles"):
        (tmp_path / name).symlink_to(REPO / name)
    return tmp_path


def signal_mid_run(cluster: SlurmCluster, folder: Path, timeout: float = 300) -> str:
    """Once pretraining has logged a few steps, send its Slurm job the time-limit signal (to every
    process of its steps, as `--signal` does); returns the job id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = list(folder.glob("artifacts/pretrain/*/metrics.jsonl"))
        if logs and logs[0].read_text().count('"train/loss"') >= 10:
            jobs = subprocess.run(["squeue", "--noheader", "--format=%i %k"], env=cluster.env,
                                  capture_output=True, text=True, check=True).stdout
            ids = [line.split()[0] for line in jobs.splitlines() if "rule_pretrain" in line]
            assert len(ids) == 1, jobs
            subprocess.run(["scancel", f"--signal={STOP_SIGNAL.name[3:]}", ids[0]], env=cluster.env, check=True)
            return ids[0]
        time.sleep(0.05)
    raise AssertionError("pretraining never logged 10 steps")


def test_pipeline_on_two_slurm_nodes_equals_local_run(cluster, tmp_path):
    root = workdir(tmp_path / "slurm")
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm",
           "--slurm-init-seconds-before-status-checks", "2", "--config", f"overrides={PRETRAIN} pretrain.nodes=2"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=root, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        signalled = signal_mid_run(cluster, root)
        out, _ = proc.communicate(timeout=900)
    finally:
        proc.kill()
    seconds = time.monotonic() - started
    assert proc.returncode == 0, out[-6000:] + cluster.log("slurmctld.log")[-2000:]
    print(f"slurm pipeline: {seconds:.0f} s")

    # Every stage (and the report) ran as a Slurm job; pretrain twice (the signalled try, the retry).
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/", out)
    by_rule: dict[str, list[str]] = {}
    for job, rule in submitted:
        by_rule.setdefault(rule, []).append(job)
    assert set(by_rule) == {*STAGES, "report"}, out[-3000:]
    assert len(by_rule["pretrain"]) == 2 and signalled == by_rule["pretrain"][0]

    pre = next((root / "artifacts/pretrain").iterdir())
    log = (pre / "pretrain.log").read_text()
    assert "--nnodes 2 --nproc-per-node 1 --rdzv-backend c10d" in log
    # The signalled try saved a step checkpoint (its log, as Snakemake shows a failed job's) and
    # the retry resumed from it. srun relays the ranks' output, so the stage log is the retry's alone.
    stopped = re.search(r"stopped by a signal after step (\d+); checkpoint saved", out)
    assert stopped and f"resuming at step {stopped.group(1)}" in log, log[-3000:]
    # Its two ranks ran on the two Slurm nodes, each try allocated both.
    assert sorted(json.loads((pre / "meta.json").read_text())["ranks"]) == ["n1", "n2"]
    for job in by_rule["pretrain"]:
        assert re.search(rf"Allocate JobId={job} NodeList=n\[1-2\]", cluster.log("slurmctld.log"))
    assert (root / "runs/tiny/report.md").exists()

    # The same config as one local 2-process run, never interrupted: the same weights, bit for bit.
    inputs = {"data": next(root.glob("artifacts/data/*/manifest.json")),
              "tokenizer": next(root.glob("artifacts/tokenizer/*/tokenizer.model"))}
    local = tmp_path / "local"
    started = time.monotonic()
    run_stage("pretrain", local, PRETRAIN, inputs, nproc=2)
    print(f"local 2-process pretrain: {time.monotonic() - started:.0f} s")
    a = torch.load(pre / "model.pt", map_location="cpu", weights_only=True)["model"]
    b = torch.load(local / "model.pt", map_location="cpu", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs between 2 Slurm nodes x 1 and 1 node x 2"


def test_unknown_partition_fails_in_one_line_before_any_job(cluster, tmp_path):
    root = workdir(tmp_path / "w")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm",
         "--default-resources", "slurm_partition=nope"],
        cwd=root, env=cluster.env, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    ours = [line for line in out.splitlines() if line.startswith("llmstack:")]
    assert len(ours) == 1 and "Slurm partition 'nope'" in ours[0], out[-3000:]
    assert "partitions: debug (default)" in ours[0]
    assert "submitted with SLURM jobid" not in out and not (root / "artifacts").exists()
    queue = subprocess.run(["squeue", "--noheader"], env=cluster.env, capture_output=True, text=True, check=True)
    assert queue.stdout.strip() == ""
