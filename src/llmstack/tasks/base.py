"""What every chat/eval task provides.

A task is a finite, indexable, deterministic list of conversations. Training mixtures read
`task[i]`; evaluation also uses `eval_type` and, depending on it, `evaluate` (generative tasks:
score a sampled completion) or the `letters` + `answer` keys of each conversation (categorical
tasks: the model's logits over the answer letters decide).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from llmstack.conversation import Conversation


class Task:
    """Base class. Subclasses set `name`, implement `__len__` and `get(i)`; eval tasks more."""

    name: str = "task"
    eval_type: Literal["categorical", "generative"] | None = None

    def __len__(self) -> int:
        raise TypeError(f"{type(self).__name__} must define __len__")

    def get(self, index: int) -> Conversation:
        """Conversation number `index`. Categorical tasks add `letters` (e.g. ["A","B","C","D"])
        and `answer` (the correct letter); generative ones may add `answer` for scoring."""
        raise TypeError(f"{type(self).__name__} must define get()")

    def __getitem__(self, index: int) -> Conversation:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} examples")
        return self.get(index % len(self))

    def __iter__(self) -> Iterator[Conversation]:
        for i in range(len(self)):
            yield self.get(i)

    def evaluate(self, conversation: Conversation, completion: str) -> float:
        """Score (0..1) of the assistant's `completion` text for a generative task."""
        raise TypeError(f"{self.name} is not a generative eval task")
