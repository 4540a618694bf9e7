"""Experiment trackers: W&B (offline) and TensorBoard hold exactly metrics.jsonl; switching them reruns nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stagerun import stage_command
from test_train import TINY
from test_workflow import complete, config, planned

from llmstack.harness import MetricsLog
from llmstack.loggers import LOGGERS, TB_DIR, TRACKING, Sinks, Tracking
from llmstack.plan import plan_runs

wandb = pytest.importorskip("wandb")
pytest.importorskip("tensorboard")


def expected_scalars(metrics_jsonl: Path) -> dict[tuple[int, str], float]:
    """{(step, name): value} of every numeric metric in metrics.jsonl."""
    out = {}
    for line in metrics_jsonl.read_text().splitlines():
        entry = json.loads(line)
        for k, v in entry.items():
            if k != "step" and isinstance(v, int | float) and not isinstance(v, bool):
                out[(entry["step"], k)] = v
    return out


def tensorboard_scalars(folder: Path) -> dict[tuple[int, str], float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    return {(e.step, tag): e.value for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}


def wandb_records(run_dir: Path) -> list[dict]:
    """The records of an offline run's .wandb file, read by wandb's own reader (`wandb leet inspect`)."""
    (log,) = run_dir.glob("run-*.wandb")
    res = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(log)],
                         capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def test_both_loggers_hold_exactly_the_metrics(tiny_corpus, tmp_path):
    out, wandb_dir = tmp_path / "pretrain" / "abc123def0", tmp_path / "wandb-dir"
    wandb_dir.mkdir()
    overrides = f"{TINY} pretrain.max_steps=10 pretrain.eval_every=5 logger=[wandb,tensorboard]"
    inputs = {"data": tiny_corpus / "data" / "manifest.json", "tokenizer": tiny_corpus / "tok.model"}
    cmd = stage_command("pretrain", out, overrides, inputs)
    at = cmd.index("--execution") + 1
    exe = json.loads(cmd[at])
    assert exe[TRACKING]["loggers"] == ["wandb", "tensorboard"]  # the planner put them there
    cmd[at] = json.dumps({**exe, TRACKING: {**exe[TRACKING], "run": "tiny-test"}})
    env = {**os.environ, "OMP_NUM_THREADS": "2", "WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir),
           "WANDB_PROJECT": "llmstack-test", "WANDB_SILENT": "true"}  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    want = expected_scalars(out / "metrics.jsonl")
    assert ((10, "val/bpb") in want) and ((9, "train/loss") in want)
    tb = tensorboard_scalars(out / TB_DIR)
    assert tb.keys() == want.keys()
    for k, v in want.items():  # TensorBoard keeps float32
        assert tb[k] == pytest.approx(v, rel=1e-6, abs=1e-30), k

    (run_dir,) = (wandb_dir / "wandb").glob("offline-run-*")
    records = wandb_records(run_dir)
    (run,) = [r["run"] for r in records if r["type"] == "run"]
    assert run["display_name"] == "pretrain-abc123def0" and run["run_group"] == "tiny-test"
    assert run["project"] == "llmstack-test" and run["job_type"] == "pretrain"
    assert run["config"]["update"]["key"] == "abc123def0" and run["config"]["update"]["model"]["depth"] == 1
    got = {}
    for r in records:
        if r["type"] == "history":
            step = int(r["history"]["step"].get("num", 0))
            got.update({(step, k): v for k, v in r["history"]["item"].items() if not k.startswith("_")})
    assert got == want


def test_loggers_close_on_a_time_limit_stop(tiny_corpus, tmp_path):
    # SIGUSR1 mid-run: exit 75 with both loggers closed (TensorBoard flushed to the last entry, the
    # W&B run finished as failed by the harness, not by wandb's exit hook).
    out, wandb_dir = tmp_path / "pretrain" / "0123456789", tmp_path / "wandb-dir"
    overrides = f"{TINY} pretrain.max_steps=60 pretrain.ckpt_every=0 logger=[wandb,tensorboard]"
    inputs = {"data": tiny_corpus / "data" / "manifest.json", "tokenizer": tiny_corpus / "tok.model"}
    env = {**os.environ, "OMP_NUM_THREADS": "2", "WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir)}
    proc = subprocess.Popen(stage_command("pretrain", out, overrides, inputs), env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and "train/loss" not in _read(out / "metrics.jsonl"):
        time.sleep(0.02)
    proc.send_signal(signal.SIGUSR1)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 75, output[-2000:]
    assert tensorboard_scalars(out / TB_DIR) == pytest.approx(expected_scalars(out / "metrics.jsonl"))
    (run_dir,) = (wandb_dir / "wandb").glob("offline-run-*")
    exits = [r["exit"] for r in wandb_records(run_dir) if r["type"] == "exit"]
    assert [e.get("exit_code") for e in exits] == [1], exits


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_resume_replays_the_kept_entries(tmp_path):
    # A resumed attempt (from step 3) starts a fresh TensorBoard folder holding the whole curve once.
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "train/loss": 5.0 - s}) + "\n" for s in range(6)))
    (tmp_path / TB_DIR).mkdir()
    (tmp_path / TB_DIR / "events.out.tfevents.stale").write_bytes(b"")
    tracking = Tracking(["tensorboard"], "tiny", "pretrain", "k", tmp_path)
    log = MetricsLog(path, True, 3, Sinks(tracking))
    for s in range(3, 5):
        log.log({"step": s, "train/loss": 1.0 / (s + 1), "samples": ["text is not a scalar"]})
    log.close()
    assert tensorboard_scalars(tmp_path / TB_DIR) == pytest.approx(expected_scalars(path))
    assert not (tmp_path / TB_DIR / "events.out.tfevents.stale").exists()


def test_a_missing_logger_fails_at_plan_time_with_the_pip_line(monkeypatch):
    monkeypatch.setitem(LOGGERS, "wandb", "llmstack_no_such_module")
    with pytest.raises(ValueError, match=r'^logger=wandb: .* not installed; pip install -e "\.\[wandb\]"$'):
        plan_runs("tiny", overrides="logger=[wandb]")
    with pytest.raises(ValueError, match=r"logger=.*nope.*: must be a list of wandb, tensorboard"):
        plan_runs("tiny", overrides="logger=[nope]")


def test_switching_a_logger_on_reruns_nothing(tmp_path):
    (off,) = plan_runs("tiny")
    (on,) = plan_runs("tiny", overrides="logger=[tensorboard]")
    assert {n: s.key for n, s in on.stages.items()} == {n: s.key for n, s in off.stages.items()}
    assert on.stages["sft"].execution[TRACKING] == {"loggers": ["tensorboard"], "run": "tiny"}
    assert TRACKING not in on.stages["data"].execution  # only trained stages log
    complete(tmp_path, *config())
    assert planned(tmp_path, *config("logger=[tensorboard]")) == {}
    assert planned(tmp_path, *config("logger=[wandb,tensorboard]")) == {}
