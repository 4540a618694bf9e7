"""Housekeeping around a stage: stale temp files go at start, a rerun's log keeps the crashed attempt's
lines, and a finished stage keeps no step checkpoints.

The log test runs the stage the way the rule's shell line does (`> {log} 2>&1`) and deletes the log
between attempts, as Snakemake does before it reruns a job (snakemake/jobs.py remove_existing_output).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from stagerun import kill_at_checkpoint, stage_command
from test_train import TINY

from llmstack.checkpoint import Checkpointer, prune_steps
from llmstack.stages.common import EARLIER_LOG


def start_logged(log: Path, stage: str, out: Path, overrides: str, inputs: dict[str, Path]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as f:  # the shell's `> {log} 2>&1`: truncates, the child writes
        return subprocess.Popen(
            stage_command(stage, out, overrides, inputs), stdout=f, stderr=subprocess.STDOUT, env=env
        )


def test_rerun_keeps_the_log_removes_stale_temps_and_finished_checkpoints(tiny_corpus, tmp_path):
    out = tmp_path / "artifacts" / "pretrain" / "0123456789"
    out.mkdir(parents=True)
    log = out / "pretrain.log"
    inputs = {"data": tiny_corpus / "data" / "manifest.json", "tokenizer": tiny_corpus / "tok.model"}
    kill_at_checkpoint(start_logged(log, "pretrain", out, TINY, inputs), out / "ckpt" / "step_000008.pt")
    assert "from scratch" in log.read_text()
    log.unlink()  # Snakemake deletes the log before it reruns the job
    stale = [out / ".model.pt.k1l2m3.tmp", out / "ckpt" / ".step_000012.pt.x9y8z7.tmp"]
    neighbour = tmp_path / "artifacts" / "pretrain" / "fedcba9876" / ".model.pt.a1b2c3.tmp"
    for path in [*stale, neighbour]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")

    second = start_logged(log, "pretrain", out, TINY, inputs)
    assert second.wait(timeout=300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert text.index("from scratch") < text.index("resuming at step 8") < text.index("resumed at step 8")
    assert "removed 2 stale temp file(s)" in text
    assert not any(p.exists() for p in stale) and neighbour.exists(), "only the stage's own folder is cleaned"
    assert (out / "model.pt").is_file() and (out / "meta.json").is_file()
    assert not (out / "ckpt").exists(), "a finished stage keeps no step checkpoints by default"
    assert not (out / EARLIER_LOG).exists(), "a finished stage's forced rerun starts a fresh log"


def test_prune_keeps_the_newest_and_leaves_foreign_files(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt", keep=3)
    for step in (4, 8, 12):
        ckpt.save(step, {"value": step})
    prune_steps(tmp_path / "ckpt", keep=1)
    assert [s for s, _ in ckpt.steps()] == [12]
    (tmp_path / "ckpt" / "notes.txt").write_text("not a checkpoint")
    prune_steps(tmp_path / "ckpt", keep=0)
    assert ckpt.steps() == [] and (tmp_path / "ckpt" / "notes.txt").exists()
