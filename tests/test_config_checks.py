"""Bad values fail at composition, in one line naming the key, the value and what is allowed."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from llmstack.config import CONFIG_DIR, Config, compose_config, one_line
from llmstack.config_checks import constrained_fields

PRESETS = sorted(p.stem for p in (CONFIG_DIR / "preset").glob("*.yaml"))
CHECKS = constrained_fields(Config)


def fails(overrides: str, preset: str = "tiny") -> str:
    """The one-line message a bad config gets (what `llmstack config` and the Snakefile print)."""
    with pytest.raises((ValueError, ConfigCompositionException, ValidationError)) as info:
        compose_config(preset, overrides)
    message = one_line(info.value)
    assert "\n" not in message
    return message


def test_the_schema_constrains_the_settings_the_issue_names():
    keys = {key for key, _ in CHECKS}
    assert {"pretrain.max_steps", "pretrain.matrix_lr", "rl.num_steps", "rl.samples_per_prompt"} <= keys
    assert {"data.source", "tokenizer.vocab_size", "model.seq_len", "sft.init_lr_frac", "chat.stage"} <= keys


@pytest.mark.parametrize(("key", "check"), CHECKS, ids=[f"{k}:{c.allowed}" for k, c in CHECKS])
def test_every_constrained_field_rejects_a_bad_value(key, check):
    # A schema walk: each check carries a value that breaks it; the message starts with the key
    # and, for a check on the value alone, says what that check allows.
    message = fails(f"{key}={check.bad}")
    assert message.startswith(f"{key}=")
    assert check.other or message.endswith(f": must be {check.allowed}")


@pytest.mark.parametrize("preset", PRESETS)
def test_every_shipped_preset_passes_the_checks(preset):
    compose_config(preset)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("pretrain.max_steps=0", "pretrain.max_steps=0: must be >= 1"),
        ("pretrain.matrix_lr=-0.01", "pretrain.matrix_lr=-0.01: must be > 0"),
        ("pretrain.embedding_lr=0", "pretrain.embedding_lr=0.0: must be > 0"),
        ("rl.num_steps=-5", "rl.num_steps=-5: must be >= 1"),
        ("rl.samples_per_prompt=0", "rl.samples_per_prompt=0: must be >= 2"),
        ("rl.lr_frac=1.5", "rl.lr_frac=1.5: must be in (0, 1]"),
        ("data.source=ftp", "data.source=ftp: must be one of embedded, hf, local"),
        ("tokenizer.vocab_size=5", "tokenizer.vocab_size=5: must be >= 330 (256 byte pieces + 9 special tokens"),
        ("model.seq_len=0", "model.seq_len=0: must be >= 1"),
        ("chat.stage=eval", "chat.stage=eval: must be one of rl, sft, midtrain, pretrain"),
        ("pretrain.device=gpu", "pretrain.device=gpu: must be auto, cpu, cuda or cuda:N"),
    ],
)
def test_the_reported_bad_values_fail_with_one_line(override, message):
    assert fails(override).startswith(message)


def test_relations_between_settings():
    # derive picks a power-of-two batch: not a multiple of a 768-token sequence
    assert fails("model.seq_len=768") == "pretrain.total_batch_tokens=8192: must be a multiple of model.seq_len=768"
    assert fails("sft.total_batch_tokens=1000").startswith("sft.total_batch_tokens=1000: must be a multiple of")
    assert fails("sft.warmup_ratio=0.5") == "sft.warmup_ratio=0.5: must be <= 1 - sft.warmdown_ratio=1.0"
    assert fails("model.vocab_size=1024").startswith("model.vocab_size=1024: must be >= tokenizer.vocab_size=4096")
    assert fails("data.hf.val_shard=3").startswith("data.hf.val_shard=3: must be >= data.hf.n_shards=8")
    odd_heads = fails("model.depth=1 model.aspect_ratio=33")  # one head 33 wide: rotary needs pairs
    assert odd_heads.startswith("model.n_head=1: must be a divisor of model.n_embd=33")
    assert fails("model.aspect_ratio=null") == "model.aspect_ratio: must be set"  # derive needs it


def test_null_means_derive_and_passes():
    cfg = compose_config("tiny", "pretrain.max_steps=null pretrain.total_batch_tokens=null model.n_embd=null")
    assert cfg.pretrain.max_steps >= 1 and cfg.pretrain.total_batch_tokens % cfg.model.seq_len == 0


def test_unknown_preset_or_group_option_lists_the_choices_on_one_line():
    assert fails("", preset="nope") == f"preset=nope: must be one of {', '.join(PRESETS)}"
    assert fails("data=ftp").endswith("Available options in 'data': embedded, hf, local")
