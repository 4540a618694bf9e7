"""llmstack.launch: multi-node torchrun under Slurm, standalone on one node, one-line failures."""

import json
import os
import stat
import subprocess
import sys

import pytest

from llmstack.launch import command, main
from llmstack.plan import plan_runs


def _args(overrides: str, inputs: dict[str, str] | None = None) -> list[str]:
    spec = plan_runs(preset="tiny", overrides=overrides)[0].stages["pretrain"]
    args = ["artifacts/pretrain/x", "--config", spec.config_json(), "--execution", json.dumps(spec.execution)]
    for name, path in (inputs or {}).items():
        args += ["--input", f"{name}={path}"]
    return args


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, body in {"scontrol": 'printf "gpu-a17\\ngpu-a18\\n"\n', "srun": "exit 0\n"}.items():
        f = bin_ / name
        f.write_text("#!/bin/sh\n" + body)
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu-a[17-18]")


def test_two_nodes_eight_gpus_is_one_torchrun_agent_per_node(fake_slurm):
    cmd = command("pretrain", _args("pretrain.nodes=2 pretrain.gpus_per_node=8"))
    s = " ".join(cmd)
    assert cmd[0] == "srun" and "--ntasks-per-node=1" in cmd
    assert "torchrun --nnodes 2 --nproc-per-node 8" in s
    assert "--rdzv-backend c10d --rdzv-endpoint gpu-a17:29500 --rdzv-id 4242" in s
    assert "-m llmstack.stages.pretrain" in s and "--standalone" not in s


def test_one_node_stays_standalone(fake_slurm):
    cmd = command("pretrain", _args("pretrain.cpu_procs=2 pretrain.device=cpu"))
    assert cmd[:3] == ["torchrun", "--standalone", "--nproc_per_node=2"]
    assert command("pretrain", _args("pretrain.device=cpu"))[:3] == [sys.executable, "-m", "llmstack.stages.pretrain"]


def test_nodes_without_slurm_fails_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    with pytest.raises(SystemExit) as err:
        main(["pretrain", *_args("pretrain.nodes=2")])
    assert err.value.code == 2
    out = capsys.readouterr().err.strip()
    assert "\n" not in out and "nodes=2 needs a Slurm job" in out


def test_missing_input_names_path_and_shared_storage(tmp_path):
    missing = tmp_path / "artifacts/tokenizer/abc/tokenizer.model"
    args = _args("", {"tokenizer": str(missing)})
    proc = subprocess.run([sys.executable, "-m", "llmstack.launch", "pretrain", *args], capture_output=True, text=True)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and str(missing) in line and "not found on" in line
    assert "artifacts/, runs/ and .snakemake/ must be on a file system every node sees" in line
