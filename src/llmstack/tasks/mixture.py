"""Training mixtures: several tasks, each repeated or subsampled, shuffled into one deterministic list.

    mix = build_mixture([
        {"task": "smoltalk", "size": 10_000},
        {"task": "gsm8k", "split": "train", "path": "data/gsm8k", "epochs": 2},
        {"task": "identity", "weight": 3.0, "name": "llmstack-tiny"},
    ], seed=0)
    len(mix), mix[0], mix.counts()   # counts() -> {"smoltalk": 10000, "gsm8k": 14946, "identity": 3000}

Entry keys: "task" (a name in llmstack.tasks.TASKS); "epochs" or its alias "weight" (default 1.0:
how many times each conversation of the task enters the mixture; the fractional part takes a seeded
subset, so 0.5 = half the task once, 2.5 = everything twice plus a seeded half); "size" (passed to
the task when it takes one, otherwise the first `size` conversations are used); "label" (the name in
counts(), needed when one task appears twice); every other key is a task option.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from llmstack.conversation import Conversation
from llmstack.tasks import make_task, task_class, task_options
from llmstack.tasks.base import Task

MIXTURE_KEYS = ("task", "epochs", "weight", "size", "label")


def _parse_entry(position: int, entry: Mapping) -> tuple[str, str, float, dict]:
    """(task name, label, epochs, task kwargs) of one entry, with one-line errors naming the entry."""
    where = f"mixture entry {position}"
    if not isinstance(entry, Mapping) or "task" not in entry:
        raise ValueError(f"{where}: needs a 'task' key, got {entry!r}")
    entry = dict(entry)
    name = str(entry.pop("task"))
    task_class(name)  # unknown name -> ValueError listing the valid ones
    if "epochs" in entry and "weight" in entry:
        raise ValueError(f"{where} ({name}): give 'epochs' or 'weight', not both")
    epochs = float(entry.pop("epochs", entry.pop("weight", 1.0)))
    if not math.isfinite(epochs) or epochs < 0:
        raise ValueError(f"{where} ({name}): epochs/weight must be a finite number >= 0, got {epochs}")
    label = str(entry.pop("label", name))
    return name, label, epochs, entry


def _instantiate(position: int, name: str, kwargs: dict) -> tuple[Task, int | None]:
    """The task, and the size cap the mixture itself must apply (None when the task took it)."""
    size = kwargs.pop("size", None)
    if size is not None and "size" in task_options(name):
        kwargs["size"] = int(size)
        size = None
    try:
        task = make_task(name, **kwargs)
    except (ValueError, FileNotFoundError) as e:
        error = FileNotFoundError if isinstance(e, FileNotFoundError) else ValueError
        raise error(f"mixture entry {position} ({name}): {e}") from e
    return task, None if size is None else int(size)


def _plan(n: int, epochs: float, rng: np.random.Generator) -> np.ndarray:
    """Indices into a task of n conversations: floor(epochs) full passes plus a seeded fraction."""
    full = int(epochs)
    extra = round((epochs - full) * n)
    parts = [np.arange(n, dtype=np.int64)] * full
    if extra:
        parts.append(np.sort(rng.choice(n, size=extra, replace=False)).astype(np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


class Mixture:
    """A shuffled list of (task, index) pairs; item i is that task's conversation."""

    def __init__(self, tasks: dict[str, Task], task_ids: np.ndarray, indices: np.ndarray):
        self.tasks = tasks
        self._labels = list(tasks)
        self._task_ids, self._indices = task_ids, indices

    def __len__(self) -> int:
        return len(self._indices)

    def source(self, i: int) -> tuple[str, int]:
        """(label, index in that task) of item i."""
        return self._labels[self._task_ids[i]], int(self._indices[i])

    def __getitem__(self, i: int) -> Conversation:
        if not -len(self) <= i < len(self):
            raise IndexError(f"mixture index {i} out of range for {len(self)} conversations")
        label, index = self.source(i)
        return self.tasks[label][index]

    def counts(self) -> dict[str, int]:
        """Conversations per task label, as recorded in a stage's metrics.json."""
        per_task = np.bincount(self._task_ids, minlength=len(self._labels))
        return {label: int(n) for label, n in zip(self._labels, per_task, strict=True)}


def build_mixture(entries: list[Mapping], seed: int) -> Mixture:
    """Instantiate every entry's task and shuffle their planned conversations with `seed`."""
    if not entries:
        raise ValueError("mixture has no entries")
    rng = np.random.default_rng(seed)
    tasks: dict[str, Task] = {}
    ids, indices = [], []
    for position, entry in enumerate(entries):
        name, label, epochs, kwargs = _parse_entry(position, entry)
        if label in tasks:
            raise ValueError(
                f"mixture entry {position}: label {label!r} is used twice; add a distinct 'label'"
            )
        task, cap = _instantiate(position, name, kwargs)
        n = len(task) if cap is None else min(cap, len(task))
        if n == 0:
            raise ValueError(f"mixture entry {position} ({label}): the task has no conversations")
        planned = _plan(n, epochs, rng)
        tasks[label] = task
        ids.append(np.full(len(planned), len(tasks) - 1, dtype=np.int32))
        indices.append(planned)
    task_ids, all_indices = np.concatenate(ids), np.concatenate(indices)
    order = rng.permutation(len(all_indices))
    return Mixture(tasks, task_ids[order], all_indices[order])


def validate_mixture(entries: list[Mapping]) -> dict[str, int]:
    """Build every task of a mixture (reading its files, or downloading them when path is empty) so a
    missing task, file or option fails before training; returns the planned counts per label."""
    return build_mixture(entries, seed=0).counts()
