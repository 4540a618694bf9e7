"""Value constraints of the config schema, declared next to each field, and the walk that checks them.

    steps: int = setting(100, at_least(1))               # in llmstack.config's schema
    check_values(cfg, Config)  # ValueError: "pretrain.max_steps=0: must be >= 1"

Hydra checks types; these check ranges, enums and relations between settings, so a bad value fails
when the config is composed (for defaults, presets and overrides alike), in one line that names the
key, the value and what is allowed, instead of inside a job an hour later. Each helper also carries
a value that fails it (`bad`), so a test can walk the schema and try one for every constrained field.
`one_line` is how the CLI and the Snakefile print any config error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from llmstack.tokenizer import SPECIAL_TOKENS


@dataclass(frozen=True)
class Check:
    """One constraint: `passes(value, other)` where `other` is the value of the setting named by
    `other` (a sibling field, or a dotted key from the root), else None."""

    passes: Callable[[Any, Any], bool]
    allowed: str  # completes "must be ..."; {other} becomes "key=value" of the other setting
    bad: Any  # a value that fails this check (on the tiny preset, for a relation)
    other: str = ""


def setting(default: Any, *checks: Check, role: str | None = None) -> Any:
    """A schema field with constraints; `role` is llmstack.plan's ('execution' or 'plan')."""
    meta: dict[str, Any] = {"checks": checks}
    if role:
        meta["role"] = role
    return field(default=default, metadata=meta)


def at_least(n: int | float) -> Check:
    return Check(lambda v, _: v >= n, f">= {n}", n - 1)


def positive() -> Check:
    return Check(lambda v, _: v > 0, "> 0", 0)


def between(lo: int | float, hi: int | float) -> Check:
    return Check(lambda v, _: lo <= v <= hi, f"between {lo} and {hi}", hi + 1)


def fraction() -> Check:
    """A share that must not vanish: the fraction of a recorded learning rate a stage trains at."""
    return Check(lambda v, _: 0 < v <= 1, "in (0, 1]", 0)


def proper_fraction() -> Check:
    """A split of a whole into two non-empty parts (validation vs training documents)."""
    return Check(lambda v, _: 0 < v < 1, "in (0, 1)", 1)


def unit_interval() -> Check:
    return Check(lambda v, _: 0 <= v <= 1, "in [0, 1]", 1.5)


def one_of(*values: str) -> Check:
    return Check(lambda v, _: v in values, f"one of {', '.join(values)}", "nope")


def matches(pattern: str, allowed: str) -> Check:
    return Check(lambda v, _: re.fullmatch(pattern, v) is not None, allowed, "nope")


def not_below(other: str) -> Check:
    return Check(lambda v, o: v >= o, ">= {other}", 1, other)


def multiple_of(other: str) -> Check:
    return Check(lambda v, o: o > 0 and v % o == 0, "a multiple of {other}", 1, other)


def sum_at_most_one(other: str) -> Check:
    return Check(lambda v, o: v + o <= 1, "<= 1 - {other}", 1, other)


def head_split(n_embd: str) -> Check:
    """n_head must divide the width into heads of even width (rotary embeddings rotate pairs)."""
    even = lambda v, o: v > 0 and o % v == 0 and (o // v) % 2 == 0
    return Check(even, "a divisor of {other} into heads of even width", 0, n_embd)


# Sentencepiece needs a piece per byte (byte fallback), per special token, <unk>, and per character
# it covers (~60 for the toy world, ~100 for English text; a smaller vocab fails inside the job).
MIN_VOCAB = 256 + len(SPECIAL_TOKENS) + 1 + 64


def vocab() -> Check:
    why = f"256 byte pieces + {len(SPECIAL_TOKENS)} special tokens + <unk> + 64 characters"
    return Check(lambda v, _: v >= MIN_VOCAB, f">= {MIN_VOCAB} ({why})", MIN_VOCAB - 1)


DEVICE = matches(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N")


def check_values(cfg: DictConfig, schema: type) -> None:
    """Raise ValueError naming the first setting of `cfg` that breaks its schema field's checks.

    Every value is checked on its own before any relation, so a relation never blames a good
    setting for its bad partner. None skips a field (None = derive), except for plan settings:
    `derive` consumes them. A relation whose other setting is None (not derived yet) is skipped."""
    found = list(_walk(cfg, schema, ""))
    for key, spec, value, _ in found:
        if value is MISSING or (value is None and spec.metadata.get("role") == "plan"):
            raise ValueError(f"{key}: must be set")
    for relations in (False, True):
        for key, spec, value, prefix in found:
            for check in spec.metadata["checks"]:
                if value is not None and bool(check.other) == relations:
                    _apply(check, key, value, prefix, cfg)


def _apply(check: Check, key: str, value: Any, prefix: str, cfg: DictConfig) -> None:
    other_key = check.other if "." in check.other else prefix + check.other
    other = OmegaConf.select(cfg, other_key) if check.other else None
    if check.other and other is None:
        return
    if not check.passes(value, other):
        allowed = check.allowed.format(other=f"{other_key}={_show(other)}")
        raise ValueError(f"{key}={_show(value)}: must be {allowed}")


def _walk(node: DictConfig, schema: type, prefix: str) -> Any:
    """(key, field, value, prefix) of every constrained field, depth first in schema order."""
    for f in fields(schema):
        if is_dataclass(f.default_factory):
            yield from _walk(node[f.name], f.default_factory, f"{prefix}{f.name}.")
        elif f.metadata.get("checks"):
            value = MISSING if OmegaConf.is_missing(node, f.name) else node[f.name]
            yield f"{prefix}{f.name}", f, value, prefix


def constrained_fields(schema: type, prefix: str = "") -> list[tuple[str, Check]]:
    """(dotted key, check) for every check in the schema: what the schema-walking test tries."""
    out = []
    for f in fields(schema):
        if is_dataclass(f.default_factory):
            out += constrained_fields(f.default_factory, f"{prefix}{f.name}.")
        else:
            out += [(f"{prefix}{f.name}", c) for c in f.metadata.get("checks", ())]
    return out


def one_line(err: BaseException) -> str:
    """A config error as one line: Hydra's message plus the reason on its next line, if any."""
    lines: list[str] = []
    for raw in str(err).strip().splitlines():
        if raw.startswith("Config search path:"):
            break  # Hydra's search path after a missing group option: noise to a user
        if raw.startswith("\t") and lines:  # Hydra lists group options one per tabbed line
            lines[-1] += (" " if lines[-1].endswith(":") else ", ") + raw.strip()
        elif raw.strip():
            lines.append(raw.strip())
    if err.__cause__ is not None and str(err.__cause__).strip():
        lines = lines[:1] + [str(err.__cause__).strip().splitlines()[0]]
    return ": ".join(lines[:2]) if lines else type(err).__name__


def _show(value: Any) -> str:
    """A value as the user would type it; odd strings quoted so the message stays one line."""
    if isinstance(value, str):
        return value if value.isprintable() and value.strip() == value and value else repr(value)
    return str(value)
