"""`llmstack resume` as a user meets it: a run started with overrides and killed mid-pretrain is
finished by a bare `llmstack resume`; a live snakemake in the folder blocks the unlock; arguments
after `--` reach snakemake."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_end_to_end import SMALL

from llmstack.plan import plan_runs
from llmstack.resume import live_snakemakes

REPO = Path(__file__).resolve().parents[1]
# Fewer steps and evaluation tokens than the end-to-end run, so the whole run fits in a test.
FAST = f"{SMALL} midtrain.max_steps=2 sft.max_steps=2 rl.num_steps=1 midtrain.eval_tokens=512 sft.eval_tokens=512"
RUN = "crashed"


def snakemake(workdir: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", *args]
    # Its own session, so the test can stop snakemake and the jobs it started in one signal.
    return subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def llmstack_resume(workdir: Path, *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "llmstack.cli", "resume", *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # like a crash: snakemake leaves its lock behind
    proc.wait(timeout=10)


def start_and_kill_in_pretrain(workdir: Path) -> None:
    proc = snakemake(workdir, "--config", f"overrides={FAST}", f"run={RUN}")
    try:
        wait_for(lambda: list(workdir.glob("artifacts/pretrain/*/pretrain.log")), proc)
    finally:
        kill_group(proc)
    assert list((workdir / ".snakemake" / "locks").iterdir()), "expected a stale lock"


@pytest.mark.slow  # the whole (shrunk) pipeline: about 90 s on 2 cores
def test_bare_resume_finishes_the_run_that_was_started(tmp_path):
    start_and_kill_in_pretrain(tmp_path)
    assert json.loads((tmp_path / "runs" / RUN / "invocation.json").read_text())["config"]["overrides"] == FAST
    done = llmstack_resume(tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (plan,) = plan_runs("tiny", run=RUN, overrides=FAST)
    planned = {spec.dir for spec in plan.stages.values()}
    finished = {str(p.parent.relative_to(tmp_path)) for p in tmp_path.glob("artifacts/*/*/meta.json")}
    assert finished == planned
    assert (tmp_path / "runs" / RUN / "report.md").is_file()


def test_dry_run_arguments_pass_through(tmp_path):
    # A run stopped after its data stage, then a dry resume: it plans the rest of *that* run and
    # changes nothing (no new record, no job).
    proc = snakemake(tmp_path, "--until", "data", "--config", f"overrides={FAST}", f"run={RUN}")
    assert proc.wait(timeout=60) == 0, proc.stdout.read().decode()[-3000:]
    last = (tmp_path / "runs" / ".last-invocation.json").read_text()
    assert json.loads(last)["run"] == RUN
    dry = llmstack_resume(tmp_path, "--", "-n", "--cores", "1", timeout=60)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "pretrain" in dry.stdout and f"runs/{RUN}/report.md" in dry.stdout
    assert (tmp_path / "runs" / ".last-invocation.json").read_text() == last
    assert not list(tmp_path.glob("artifacts/tokenizer/*"))


def test_resume_refuses_beside_a_live_snakemake(tmp_path):
    # A real snakemake holding the folder's lock while its one job sleeps.
    (tmp_path / "Snakefile").write_text('rule all:\n    output: "done"\n    shell: "sleep 60; touch {output}"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        locks = tmp_path / ".snakemake" / "locks"
        wait_for(lambda: locks.is_dir() and any(locks.iterdir()), proc)
        assert live_snakemakes(tmp_path) == [proc.pid]
        res = llmstack_resume(tmp_path, timeout=30)
        assert res.returncode == 2
        assert f"PID {proc.pid}" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert any(locks.iterdir()), "the live run's lock must stay"
    finally:
        kill_group(proc)
    assert live_snakemakes(tmp_path) == []


def test_unknown_run_names_the_known_ones(tmp_path):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "invocation.json").write_text('{"config": {}}')
    res = llmstack_resume(tmp_path, "nope", "--", "-n", timeout=30)
    assert res.returncode == 2 and "runs started here: a" in res.stderr, res.stderr


def test_passed_config_keys_merge_into_the_recorded_ones():
    from llmstack.resume import resume_commands

    record = {"config": {"preset": "tiny", "run": "a", "overrides": "model.depth=2"}}
    unlock, rerun = resume_commands(record, ["--cores", "2", "all", "--config", "overrides=model.depth=4"])
    assert rerun[3:] == ["--cores", "all", "--rerun-incomplete", "--cores", "2", "all",
                         "--config", "preset=tiny", "run=a", "overrides=model.depth=4"]  # fmt: skip
    assert unlock[3] == "--unlock" and resume_commands(record, ["-n"])[0] is None
