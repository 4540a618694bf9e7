"""The training loop: loss falls, SIGKILL + restart resumes bit-identically, 2-process DDP == 1 process.

Runs the real pretrain stage entry point on a tiny corpus and model (fp32, CPU).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch
from stagerun import kill_at_checkpoint, run_stage, start_stage

from llmstack.cluster import STOP_SIGNAL

TINY = (
    "model.depth=1 model.aspect_ratio=64 model.head_dim=32 model.seq_len=64 tokenizer.vocab_size=384 "
    "pretrain.total_batch_tokens=512 pretrain.device_batch_size=4 pretrain.max_steps=12 "
    "pretrain.ckpt_every=4 pretrain.eval_every=6 pretrain.eval_tokens=1024 pretrain.sample_every=0 "
    "pretrain.precision=fp32 pretrain.warmdown_ratio=0.5 pretrain.matrix_lr=0.04"
)


def pretrain(out: Path, corpus: Path, overrides: str = "", nproc: int = 1, wait: bool = True):
    inputs = {"data": corpus / "data" / "manifest.json", "tokenizer": corpus / "tok.model"}
    if not wait:
        return start_stage("pretrain", out, f"{TINY} {overrides}", inputs, nproc)
    return run_stage("pretrain", out, f"{TINY} {overrides}", inputs, nproc)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_loss_falls_and_outputs_are_complete(tiny_corpus, tmp_path):
    pretrain(tmp_path / "run", tiny_corpus)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val/bpb"] < 0.8 * metrics["val/bpb_first"]
    assert metrics["train/loss_last"] < metrics["train/loss_first"] - 1.0
    assert (tmp_path / "run" / "model.pt").exists() and (tmp_path / "run" / "config.yaml").exists()
    assert not (tmp_path / "run" / "ckpt").exists(), "finished: step checkpoints are no longer needed"
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines if "train/loss" in e] == list(range(12))


def test_sigkill_then_restart_is_bit_identical(tiny_corpus, tmp_path):
    pretrain(tmp_path / "straight", tiny_corpus)
    proc = pretrain(tmp_path / "killed", tiny_corpus, wait=False)
    kill_at_checkpoint(proc, tmp_path / "killed" / "ckpt" / "step_000008.pt")
    assert not (tmp_path / "killed" / "model.pt").exists(), "killed too late to test resume"
    # A truncated newer checkpoint must be skipped with a warning, falling back to step 8.
    (tmp_path / "killed" / "ckpt" / "step_000012.pt").write_bytes(b"PK\x03\x04 truncated")
    out = pretrain(tmp_path / "killed", tiny_corpus)
    assert "resuming at step 8" in out and "skipping unreadable checkpoint" in out
    a, b = weights(tmp_path / "straight" / "model.pt"), weights(tmp_path / "killed" / "model.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    steps = [
        json.loads(x)["step"]
        for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
        if "train/loss" in x
    ]
    assert steps == list(range(12))


def test_two_process_ddp_matches_one_process(tiny_corpus, tmp_path):
    pretrain(tmp_path / "one", tiny_corpus, "pretrain.max_steps=6")
    out = pretrain(tmp_path / "two", tiny_corpus, "pretrain.max_steps=6 pretrain.device_batch_size=2", nproc=2)
    assert "2xcpu" in out
    losses = lambda run: [
        json.loads(x)["train/loss"]
        for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        if "train/loss" in x
    ]
    assert len(losses("one")) == 6
    assert losses("one") == pytest.approx(losses("two"), abs=1e-4)  # the same rows, the same steps
    # Weights agree up to float reduction order (amplified a little by Adam's sign-like steps).
    a, b = weights(tmp_path / "one" / "model.pt"), weights(tmp_path / "two" / "model.pt")
    for k in a:
        assert (a[k] - b[k]).norm() <= 1e-2 * a[k].norm(), f"{k} differs between 1 and 2 processes"


def test_time_limit_signal_checkpoints_then_resumes_bit_identically(tiny_corpus, tmp_path):
    # A scheduler's warning before the time limit (SIGUSR1, SIGURG) or preemption (SIGTERM): the job
    # checkpoints at the end of its current step, exits 75, and the rerun finishes identically.
    LONG = "pretrain.ckpt_every=0 pretrain.max_steps=30"  # long enough to be signalled mid-run
    pretrain(tmp_path / "straight", tiny_corpus, LONG)
    for sig in (signal.SIGUSR1, signal.SIGTERM, STOP_SIGNAL):  # STOP_SIGNAL: what Slurm's --signal sends
        out = tmp_path / sig.name
        proc = pretrain(out, tiny_corpus, LONG, wait=False)
        deadline = time.time() + 120
        while time.time() < deadline and "train/loss" not in _read(out / "metrics.jsonl"):
            time.sleep(0.02)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 75, output[-2000:]
        saved = sorted((out / "ckpt").glob("step_*.pt"))
        assert len(saved) == 1 and not (out / "model.pt").exists()
        assert "stopped by a signal" in output
        resumed = pretrain(out, tiny_corpus, LONG)
        assert f"resuming at step {int(saved[0].stem.split('_')[1])}" in resumed
        a, b = weights(tmp_path / "straight" / "model.pt"), weights(out / "model.pt")
        for k in a:
            assert torch.equal(a[k], b[k]), f"{k} differs after a {sig.name} stop"


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
