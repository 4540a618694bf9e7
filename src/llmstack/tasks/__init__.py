"""Chat and evaluation tasks by name, plus the file loaders they share.

    from llmstack.tasks import make_task
    gsm8k = make_task("gsm8k", split="test", path="../shared/data/gsm8k/test.jsonl")
    gsm8k[0]  # {"messages": [...], "answer": "18"}

Every task reads a local file or folder given as `path` (config key `path`), or, when `path` is
empty, downloads the standard public copy from the Hugging Face hub (`llmstack.data.hub`). The
registry holds dotted paths so importing it stays cheap and a task module loads only when used.
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmstack.tasks.base import Task

TASKS: dict[str, str | type[Task]] = {
    "mmlu": "llmstack.tasks.mmlu:MMLU",
    "arc_easy": "llmstack.tasks.arc:ARCEasy",
    "arc_challenge": "llmstack.tasks.arc:ARCChallenge",
    "gsm8k": "llmstack.tasks.gsm8k:GSM8K",
    "humaneval": "llmstack.tasks.humaneval:HumanEval",
    "chat_jsonl": "llmstack.tasks.chat_jsonl:ChatJSONL",
    "smoltalk": "llmstack.tasks.chat_jsonl:SmolTalk",
    "spelling": "llmstack.tasks.spelling:SpellingBee",
    "letter_count": "llmstack.tasks.spelling:LetterCount",
    "identity": "llmstack.tasks.identity:Identity",
    "toyworld_chat": "llmstack.tasks.toyworld:ToyWorldChat",
    "toyworld_qa": "llmstack.tasks.toyworld:ToyWorldQA",
    "toyworld_mc": "llmstack.tasks.toyworld:ToyWorldMC",
    "toy_arithmetic": "llmstack.tasks.toyworld:ToyArithmetic",
}


def task_class(name: str) -> type[Task]:
    """The class registered as `name`; ValueError listing the valid names for an unknown one."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    target = TASKS[name]
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module_name), attr)
    return target


def task_options(name: str) -> set[str]:
    """Keyword arguments the task's constructor accepts."""
    params = inspect.signature(task_class(name)).parameters.values()
    return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def make_task(name: str, /, **kwargs: Any) -> Task:
    """Instantiate task `name` with its config options; a typo in an option fails with the valid ones.
    (`name` is positional-only: some tasks take a `name` option, e.g. identity's assistant name.)"""
    cls = task_class(name)
    params = inspect.signature(cls).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        unknown = sorted(set(kwargs) - task_options(name))
        if unknown:
            raise ValueError(
                f"task {name!r} got unknown option(s) {unknown}; it accepts {sorted(task_options(name))}"
            )
    return cls(**kwargs)


# ---------------------------------------------------------------------------- shared loaders


def local_path(task: str, path: str | Path, *, key: str = "path") -> Path:
    """`path` as a Path that exists, or FileNotFoundError naming the task, the config key and the path."""
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise FileNotFoundError(
            f"{task}: {key}={str(path)!r} does not exist "
            f"(fix the path, or leave {key} empty to download from the hub)"
        )
    return resolved


def hub_file(repo_id: str, filename: str) -> Path:
    """A file of a public hub dataset, downloaded once into the hub cache (HubUnavailableError offline)."""
    from llmstack.data.hub import fetch_file  # lazy: the data package is optional for local-only use

    return fetch_file(repo_id, filename, repo_type="dataset")


def read_jsonl(path: Path) -> Iterator[dict]:
    """Rows of a .jsonl or .jsonl.gz file; a bad line fails with its file and line number."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None


def read_parquet(path: Path, columns: list[str] | None = None) -> list[dict]:
    """Rows of a parquet file as plain dicts (only `columns` when given)."""
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns).to_pylist()


def seeded_subset(n: int, size: int | None, seed: int) -> list[int]:
    """Indices 0..n-1, or a seeded sample of `size` of them kept in original order (a representative cap)."""
    if size is None or size >= n:
        return list(range(n))
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    return sorted(random.Random(seed).sample(range(n), size))
