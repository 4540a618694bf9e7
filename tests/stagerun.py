"""Run a real stage entry point in a subprocess, as the workflow does (tests import this)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from llmstack.config import compose_config
from llmstack.pipeline import STAGES
from llmstack.plan import execution_settings, stage_slice


def stage_command(
    stage: str,
    out: Path,
    overrides: str,
    inputs: dict[str, Path],
    nproc: int = 1,
    execution: dict | None = None,
) -> list[str]:
    cfg = compose_config("tiny", overrides)
    body = stage_slice(cfg, stage)
    # eager: torch.compile's ~30 s cold start would dominate these seconds-long runs
    exe = execution_settings(cfg, stage)
    own = exe.setdefault(STAGES[stage].sections[-1], {})
    own.update({"device": "cpu", **({"compile": False} if "compile" in own else {}), **(execution or {})})
    args = [
        "-m",
        f"llmstack.stages.{stage}",
        str(out),
        "--config",
        json.dumps(body),
        "--execution",
        json.dumps(exe),
    ]
    args += [x for name, path in inputs.items() for x in ("--input", f"{name}={path}")]
    if nproc == 1:
        return [sys.executable, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]


def start_stage(*args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        stage_command(*args, **kwargs), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


def run_stage(*args, **kwargs) -> str:
    """Run a stage to completion; returns its output, raising with the tail of it on failure."""
    proc = start_stage(*args, **kwargs)
    output, _ = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"stage failed ({proc.returncode}):\n{output[-4000:]}")
    return output


def kill_at_checkpoint(proc: subprocess.Popen, ckpt: Path, timeout_s: float = 240) -> None:
    """SIGKILL `proc` as soon as the step checkpoint `ckpt` exists (fails if it never appears)."""
    deadline = time.time() + timeout_s
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ckpt.exists(), f"{ckpt.name} never appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
