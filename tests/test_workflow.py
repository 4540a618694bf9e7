"""The Snakemake DAG: its shape, rerun sets after a complete run, sweeps, lint, graph rendering.

These tests plan jobs in a temp folder; a "complete run" is simulated by creating every declared
output and letting `snakemake --touch` record it, so only the DAG logic is under test here (the
tiny end-to-end run lives in test_end_to_end.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1"]


def smk(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([*SNAKEMAKE, "-d", str(workdir), *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        )
    return res


def planned(workdir: Path, *args: str) -> dict[str, int]:
    """{rule: job count} of a dry run (empty when nothing would run)."""
    out = smk(workdir, "-n", *args).stdout
    table = re.search(r"^job\s+count\n-+\s+-+\n(.*?)^total", out, re.S | re.M)
    if not table:
        assert "Nothing to be done" in out, out[-2000:]
        return {}
    return {rule: int(n) for rule, n in (line.split() for line in table.group(1).strip().splitlines())}


def complete(workdir: Path, *args: str) -> None:
    """Mark every job of the given config as done (outputs created, metadata recorded)."""
    summary = smk(workdir, "--summary", *args).stdout.splitlines()[1:]
    for line in summary:
        path = workdir / line.split("\t")[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    smk(workdir, "--touch", "--forceall", *args)  # --forceall: record every job's metadata
    assert planned(workdir, *args) == {}


def config(overrides: str = "", sweep: str = "") -> list[str]:
    return ["--config", f"overrides={overrides}", f"sweep={sweep}"]


def test_full_pipeline_is_planned(tmp_path):
    jobs = planned(tmp_path)
    assert jobs == {
        "data": 1,
        "tokenizer": 1,
        "pretrain": 1,
        "base_eval": 1,
        "midtrain": 1,
        "sft": 1,
        "rl": 1,
        "eval": 3,
        "run_manifest": 1,
        "report": 1,
        "all": 1,
    }


def test_rerun_sets_after_a_complete_run(tmp_path):
    complete(tmp_path, *config())
    assert set(planned(tmp_path, *config("sft.init_lr_frac=0.5"))) == {
        "sft",
        "rl",
        "eval",
        "report",
        "run_manifest",
        "all",
    }
    assert planned(tmp_path, *config("sft.init_lr_frac=0.5"))["eval"] == 2  # sft and rl, not midtrain
    assert planned(tmp_path, *config()) == {}  # changed back: everything is already there
    assert set(planned(tmp_path, *config("tokenizer.vocab_size=1024"))) == {
        "tokenizer",
        "pretrain",
        "base_eval",
        "midtrain",
        "sft",
        "rl",
        "eval",
        "report",
        "run_manifest",
        "all",
    }
    assert planned(tmp_path, *config("chat.port=9000 pretrain.cpu_procs=2")) == {}
    assert set(planned(tmp_path, *config("report.gpu_hour_price=9.5"))) == {"report", "all"}


def test_sweep_shares_data_and_tokenizer(tmp_path):
    jobs = planned(tmp_path, *config(sweep="model.depth=4,6"))
    assert jobs["data"] == 1 and jobs["tokenizer"] == 1
    assert jobs["pretrain"] == 2 and jobs["report"] == 2 and jobs["sweep_report"] == 1


def test_bad_override_fails_before_any_job(tmp_path):
    res = smk(tmp_path, "-n", *config("model.dpeth=3"), check=False)
    assert res.returncode != 0
    assert "invalid config" in res.stdout + res.stderr and "dpeth" in res.stdout + res.stderr
    assert not (tmp_path / "artifacts").exists()


def test_lint_is_clean(tmp_path):
    res = smk(tmp_path, "--lint", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Lints for" not in res.stdout + res.stderr


def test_rulegraph_renders(tmp_path):
    dot = smk(tmp_path, "--rulegraph").stdout
    for rule in ("data", "tokenizer", "pretrain", "base_eval", "midtrain", "sft", "rl", "eval", "report"):
        assert f'label = "{rule}"' in dot
    if shutil.which("dot"):
        svg = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=True).stdout
        assert "<svg" in svg
