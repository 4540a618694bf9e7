"""Markdown pieces shared by the report card and the sweep table: numbers, durations, tables."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llmstack.artifacts import atomic_path

DASH = "—"  # what a cell says when its stage has not finished (or never records the value)


def num(x: Any) -> float | None:
    """x as a float when it is a number (bools and None are not)."""
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def fmt(x: Any, spec: str = ".3f") -> str:
    v = num(x)
    return DASH if v is None else format(v, spec)


def millions(x: Any) -> str:
    v = num(x)
    return DASH if v is None else f"{v / 1e6:.2f}M"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m}m {s:02d}s" if m < 60 else f"{m // 60}h {m % 60:02d}m"


def money(usd: float) -> str:
    return f"${usd:,.2f}" if usd >= 1 else f"${usd:.4f}"


def table(header: list[str], rows: Iterable[list[str]], text_columns: int = 1) -> list[str]:
    """A markdown table: the first `text_columns` left-aligned, the rest right-aligned (numbers)."""

    def cells(row: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |"

    align = "|" + ":---|" * text_columns + "---:|" * (len(header) - text_columns)
    return [cells(header), align, *(cells(r) for r in rows)]


def fenced(text: str, lang: str = "") -> list[str]:
    """A code block whose fence is longer than any backtick run inside (samples are free text)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + lang, text.rstrip("\n"), fence]


def write_text(path: Path, text: str) -> None:
    """Write-then-rename: a reader never sees half a report."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
