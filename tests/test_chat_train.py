"""Midtraining and SFT through the shared training loop: they learn, record their mixture, and an
SFT run killed with SIGKILL resumes to bit-identical weights."""

from __future__ import annotations

import json

import pytest
import torch
from stagerun import kill_at_checkpoint, run_stage, start_stage

MODEL = (
    "model.depth=1 model.aspect_ratio=64 model.head_dim=32 model.seq_len=64 tokenizer.vocab_size=384 "
    "pretrain.total_batch_tokens=512 pretrain.device_batch_size=4 pretrain.max_steps=10 pretrain.eval_every=0 "
    "pretrain.precision=fp32"
)
WORLD = "world_seed:0,n_entities:16"  # no spaces: overrides are split on whitespace
CHAT = (
    f"sft.mixture=[{{task:toyworld_chat,size:96,{WORLD}}},{{task:identity,size:16,name:bot,maker:us}}] "
    f"sft.val_mixture=[{{task:toyworld_chat,split:val,size:16,{WORLD}}}] "
    f"sft.quick_eval=[{{task:toyworld_mc,split:test,{WORLD}}}] sft.quick_eval_examples=8 "
    "sft.total_batch_tokens=512 sft.device_batch_size=4 sft.eval_every=4 sft.eval_tokens=512 sft.ckpt_every=4 "
    "sft.precision=fp32 sft.init_lr_frac=0.5 sft.num_epochs=1 "
    f"midtrain.mixture=[{{task:toyworld_chat,size:64,{WORLD}}}] "
    f"midtrain.val_mixture=[{{task:toyworld_chat,split:val,size:16,{WORLD}}}] midtrain.quick_eval=[] "
    "midtrain.total_batch_tokens=512 midtrain.device_batch_size=4 midtrain.eval_every=0 midtrain.precision=fp32"
)


@pytest.fixture(scope="module")
def base_model(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    run_stage(
        "pretrain", out, MODEL, {"data": tiny_corpus / "data" / "manifest.json", "tokenizer": tiny_corpus / "tok.model"}
    )
    return out / "model.pt"


def chat_stage(stage, out, corpus, model, overrides="", wait=True):
    args = (stage, out, f"{MODEL} {CHAT} {overrides}", {"model": model, "tokenizer": corpus / "tok.model"})
    return run_stage(*args) if wait else start_stage(*args)


@pytest.fixture(scope="module")
def chat_runs(tiny_corpus, base_model, tmp_path_factory):
    """midtrain then sft, uninterrupted: (folder, sft stage output)."""
    root = tmp_path_factory.mktemp("chat")
    chat_stage("midtrain", root / "mid", tiny_corpus, base_model)
    return root, chat_stage("sft", root / "sft", tiny_corpus, root / "mid" / "model.pt")


def test_midtrain_then_sft_learn_and_record_their_mixture(chat_runs):
    root, out = chat_runs
    mid = json.loads((root / "mid" / "metrics.json").read_text())
    assert mid["mixture_counts"] == {"toyworld_chat": 64} and mid["parent"] == "pretrain"
    assert mid["train/loss_last"] < mid["train/loss_first"]
    sft = json.loads((root / "sft" / "metrics.json").read_text())
    assert sft["mixture_counts"] == {"toyworld_chat": 96, "identity": 16}
    assert sft["steps"] == 14  # 112 conversations / 8 rows per step, rounded up
    assert sft["train/loss_last"] < sft["train/loss_first"]
    assert set(sft["quick_eval"]) == {"toyworld_mc"} and sft["quick_eval"]["toyworld_mc"]["n"] == 8
    assert "quick eval toyworld_mc" in out


def test_bad_mixture_fails_before_training(tiny_corpus, base_model, tmp_path):
    with pytest.raises(AssertionError, match="unknown task 'toyworld_chatt'"):
        chat_stage("sft", tmp_path / "bad", tiny_corpus, base_model, "sft.mixture=[{task:toyworld_chatt}]")


def test_sft_resume_after_sigkill_is_exact(tiny_corpus, chat_runs, tmp_path):
    root, _ = chat_runs
    proc = chat_stage("sft", tmp_path / "killed", tiny_corpus, root / "mid" / "model.pt", wait=False)
    kill_at_checkpoint(proc, tmp_path / "killed" / "ckpt" / "step_000008.pt")
    out = chat_stage("sft", tmp_path / "killed", tiny_corpus, root / "mid" / "model.pt")
    assert "resuming at step 8" in out
    a = torch.load(root / "sft" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
