"""The whole DAG for real, shrunk to seconds per stage: data -> ... -> report, then the rerun sets
of a changed and a changed-back hyperparameter against that complete run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORLD = "world_seed:0,n_entities:16"  # overrides are split on whitespace: no spaces inside
SMALL = " ".join(
    [
        "data.embedded.n_entities=16 data.embedded.train_bytes=300000 data.embedded.val_bytes=20000",
        "data.embedded.shard_bytes=150000 tokenizer.vocab_size=384 tokenizer.max_chars=300000",
        "model.depth=1 model.head_dim=32 model.seq_len=64",
        "pretrain.total_batch_tokens=512 pretrain.device_batch_size=4 pretrain.max_steps=8 pretrain.eval_every=4",
        "pretrain.eval_tokens=1024 pretrain.sample_every=0 pretrain.ckpt_every=4 pretrain.compile=false",
        "base_eval.toy_questions=8 base_eval.bpb_tokens=2048",
        f"midtrain.mixture=[{{task:toyworld_chat,size:32,{WORLD}}}] midtrain.val_mixture=[] midtrain.eval_every=0",
        "midtrain.total_batch_tokens=512 midtrain.device_batch_size=4 midtrain.quick_eval_examples=4",
        f"sft.mixture=[{{task:toyworld_chat,size:32,{WORLD}}},{{task:toy_arithmetic,size:16,{WORLD}}}]",
        "sft.val_mixture=[] sft.eval_every=0 sft.total_batch_tokens=512 sft.device_batch_size=4",
        "sft.quick_eval_examples=4",
        "rl.num_steps=2 rl.prompts_per_step=2 rl.samples_per_prompt=2 rl.max_new_tokens=12 rl.eval_every=0",
        "rl.eval_examples=4 rl.ckpt_every=1 eval.max_per_task=4 eval.max_new_tokens=12",
    ]
)


def smk(workdir: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2", *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(args)}\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    return res.stdout + res.stderr


def planned_rules(out: str) -> set[str]:
    table = re.search(r"^job\s+count\n-+\s+-+\n(.*?)^total", out, re.S | re.M)
    return {line.split()[0] for line in table.group(1).strip().splitlines()} if table else set()


@pytest.mark.slow
def test_whole_pipeline_runs_and_caches(tmp_path):
    smk(tmp_path, "--config", f"overrides={SMALL}")
    report = (tmp_path / "runs" / "tiny" / "report.md").read_text()
    assert "ChatCORE" in report and "pretrain" in report
    assert (tmp_path / "runs" / "tiny" / "loss_curves.png").stat().st_size > 1000
    for stage in ("pretrain", "midtrain", "sft", "rl"):
        assert list((tmp_path / "artifacts" / stage).glob("*/model.pt")), stage
    assert len(list((tmp_path / "artifacts" / "eval").glob("*/eval.json"))) == 3
    # a changed hyperparameter reruns exactly its stage and what follows; changing it back, nothing
    changed = planned_rules(smk(tmp_path, "-n", "--config", f"overrides={SMALL} sft.init_lr_frac=0.5"))
    assert changed == {"sft", "rl", "eval", "report", "run_manifest", "all"}
    assert planned_rules(smk(tmp_path, "-n", "--config", f"overrides={SMALL}")) == set()
