"""The config tree composes, validates, derives sizes from depth, and addresses stages stably."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from llmstack.config import CONFIG_DIR, compose_config, model_dims, param_counts, parse_sweep
from llmstack.plan import plan_runs

PRESETS = sorted(p.stem for p in (CONFIG_DIR / "preset").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_plans(preset):
    (plan,) = plan_runs(preset)
    assert set(plan.stages) >= {"data", "tokenizer", "pretrain", "base_eval", "midtrain", "sft", "rl"}
    p = plan.cfg.pretrain
    assert p.max_steps >= 1 and p.total_batch_tokens % plan.cfg.model.seq_len == 0


def test_presets_cover_the_documented_sizes():
    assert {"tiny", "d12", "speedrun", "d32"} <= set(PRESETS)


def test_bad_key_and_bad_value_fail_at_compose():
    with pytest.raises(ConfigCompositionException, match="dpeth"):
        compose_config("tiny", "model.dpeth=3")
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_config("tiny", "model.depth=abc")


def test_cli_config_prints_derived_numbers_and_rejects_typos():
    ok = subprocess.run(
        [sys.executable, "-m", "llmstack.cli", "config", "--preset", "speedrun", "model.depth=20"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "n_embd: 1280" in ok.stdout and "# derived:" in ok.stdout and "tokens/param" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "llmstack.cli", "config", "sft.lrr=1"], capture_output=True, text=True
    )
    assert (
        bad.returncode != 0 and "invalid config" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    )


def test_depth_dial_derives_width_heads_batch_and_horizon():
    shallow, deep = compose_config("speedrun", "model.depth=12"), compose_config("speedrun", "model.depth=24")
    assert deep.model.n_embd == 2 * shallow.model.n_embd == 1536
    assert deep.model.n_head == 12 and deep.model.n_embd % deep.model.n_head == 0
    free = compose_config("d12", "pretrain.max_steps=null pretrain.total_batch_tokens=null")
    bigger = compose_config("d12", "model.depth=20 pretrain.max_steps=null pretrain.total_batch_tokens=null")
    tokens = lambda c: c.pretrain.max_steps * c.pretrain.total_batch_tokens
    # horizon ~ tokens_params_ratio * scaling params, within one batch of rounding
    for c in (free, bigger):
        target = c.pretrain.tokens_params_ratio * param_counts(c.model)["scaling"]
        assert abs(tokens(c) - target) <= c.pretrain.total_batch_tokens
    assert tokens(bigger) > 3 * tokens(free)
    assert bigger.pretrain.total_batch_tokens >= free.pretrain.total_batch_tokens


@pytest.mark.parametrize("depth", range(1, 13))
def test_every_depth_gives_valid_heads(depth):
    d = model_dims({"depth": depth, "aspect_ratio": 64, "head_dim": 64, "kv_ratio": 2})
    assert d["n_embd"] % d["n_head"] == 0 and d["n_head"] % d["n_kv_head"] == 0


def test_stage_keys_are_stable_and_sensitive():
    keys = lambda ov="": {k: s.key for k, s in plan_runs("tiny", overrides=ov)[0].stages.items()}
    base = keys()
    assert keys() == base  # stable across compositions
    sft = keys("sft.init_lr_frac=0.5")
    changed = {k for k in base if base[k] != sft[k]}
    assert changed == {"sft", "rl", "eval/sft", "eval/rl"}
    tok = keys("tokenizer.vocab_size=1024")
    assert {k for k in base if base[k] != tok[k]} == set(base) - {"data"}
    # execution-only and chat settings change nothing
    assert (
        keys("pretrain.cpu_procs=2 pretrain.device_batch_size=4 chat.port=9999 tokenizer.threads=1") == base
    )


def test_sweep_shares_upstream_stages():
    plans = plan_runs("tiny", sweep="model.depth=4,6")
    assert [p.name for p in plans] == ["tiny-model.depth=4", "tiny-model.depth=6"]
    a, b = (p.stages for p in plans)
    assert a["data"].key == b["data"].key and a["tokenizer"].key == b["tokenizer"].key
    assert a["pretrain"].key != b["pretrain"].key


def test_sweep_grammar_is_hydras():
    assert parse_sweep("model.depth=4,6 sft.init_lr_frac=0.1,0.2") == [
        ["model.depth=4", "sft.init_lr_frac=0.1"],
        ["model.depth=4", "sft.init_lr_frac=0.2"],
        ["model.depth=6", "sft.init_lr_frac=0.1"],
        ["model.depth=6", "sft.init_lr_frac=0.2"],
    ]
    assert parse_sweep("model.depth=range(2,8,2)") == [
        ["model.depth=2"],
        ["model.depth=4"],
        ["model.depth=6"],
    ]
    assert parse_sweep("") == [[]]
