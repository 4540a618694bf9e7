"""Generated spelling tasks: spell a word out, count a letter in a word (generative).

    SpellingBee(split="train", size=2000)                  # "Spell 'harbor'." -> "h-a-r-b-o-r"
    LetterCount(words="../shared/data/words/words_alpha.txt") # "How many 'r' are in 'strawberry'?"

Tokenizers hide letters inside multi-character tokens, so small models cannot see how a word is
spelled; these conversations teach spelling out first and, for counting, checking with the python
tool. Words come from `words` (a list, or a path to a one-word-per-line file) or, by default, the
vocabulary of the toy world (`llmstack.data.toyworld`). Example i of a split is a pure function of
(split, seed, i), so a task is deterministic and costs nothing until read.
"""

from __future__ import annotations

import random
import re
import string
from pathlib import Path

from llmstack.conversation import Conversation
from llmstack.tasks import local_path
from llmstack.tasks.base import Task
from llmstack.tasks.gsm8k import extract_answer, same_number

_SPELLED = re.compile(r"\b[A-Za-z](?:-[A-Za-z])+\b")
SPELL_QUESTIONS = (
    "Spell the word '{w}'.",
    "How do you spell {w}?",
    'Can you spell "{w}" letter by letter?',
    "spell {w}",
    "Please spell out the word {w} for me.",
    "What are the letters in '{w}'?",
)
COUNT_QUESTIONS = (
    "How many '{l}' are in '{w}'?",
    "How many times does the letter {l} appear in the word {w}?",
    'Count the letter "{l}" in "{w}".',
    "how many {l}s in {w}",
    "In the word '{w}', how many times does '{l}' occur?",
    "Number of {l}'s in {w}?",
)


def load_words(words: list[str] | str | None, world_seed: int = 0, n_entities: int = 48) -> list[str]:
    """Sorted unique lowercase a-z words of length >= 2 from a list, a word-list file or the toy world."""
    if words is None:
        from llmstack.data.toyworld import build_world, world_words  # lazy: only the default needs it

        raw = world_words(build_world(world_seed, n_entities))
    elif isinstance(words, (str, Path)):
        raw = local_path("spelling", words, key="words").read_text(encoding="utf-8").split()
    else:
        raw = list(words)
    clean = sorted({w.strip().lower() for w in raw if w.strip().isascii() and w.strip().isalpha()})
    clean = [w for w in clean if len(w) >= 2]
    if not clean:
        raise ValueError("spelling: the word list holds no a-z words of length >= 2")
    return clean


def spelled(word: str) -> str:
    return "-".join(word)


class _WordTask(Task):
    eval_type = "generative"

    def __init__(
        self,
        split: str = "train",
        size: int = 1000,
        seed: int = 0,
        words: list[str] | str | None = None,
        world_seed: int = 0,
        n_entities: int = 48,
    ):
        if size < 0:
            raise ValueError(f"{self.name}: size must be >= 0, got {size}")
        self.split, self.size, self.seed = split, size, seed
        self.words = load_words(words, world_seed, n_entities)

    def __len__(self) -> int:
        return self.size

    def _rng(self, index: int) -> random.Random:
        # a string seed is hashed with SHA-512: stable across runs and Python versions
        return random.Random(f"{self.name}:{self.split}:{self.seed}:{index}")


class SpellingBee(_WordTask):
    """Spell a word out letter by letter; scored on the last hyphen-spelled word of the reply."""

    name = "spelling"

    def get(self, index: int) -> Conversation:
        rng = self._rng(index)
        word = rng.choice(self.words)
        question = rng.choice(SPELL_QUESTIONS).format(w=word)
        return {
            "messages": [
                {"role": "user", "content": question},
                {"role": "assistant", "content": f"'{word}' is spelled {spelled(word)}."},
            ],
            "answer": word,
        }

    def evaluate(self, conversation: Conversation, completion: str) -> float:
        found = _SPELLED.findall(completion)
        return float(bool(found) and found[-1].replace("-", "").lower() == conversation["answer"])


class LetterCount(_WordTask):
    """Count a letter in a word: spell it out, count by hand, check with the python tool, answer "#### n"."""

    name = "letter_count"

    def get(self, index: int) -> Conversation:
        rng = self._rng(index)
        word = rng.choice(self.words)
        absent = sorted(set(string.ascii_lowercase) - set(word))
        # mostly letters of the word; sometimes one it lacks, so "0" is a learnable answer too
        letter = rng.choice(absent) if absent and rng.random() < 0.2 else rng.choice(word)
        question = rng.choice(COUNT_QUESTIONS).format(w=word, l=letter)
        positions = [i + 1 for i, c in enumerate(word) if c == letter]
        count = len(positions)
        if count:
            where = ", ".join(map(str, positions))
            manual = f"'{letter}' is at position{'s' if count > 1 else ''} {where}, so I count {count}."
        else:
            manual = f"'{letter}' does not appear, so I count 0."
        times = "time" if count == 1 else "times"
        parts = [
            {
                "type": "text",
                "text": f"Spelling '{word}' out: {spelled(word)}.\n{manual}\nChecking with Python: ",
            },
            {"type": "python", "text": f"'{word}'.count('{letter}')"},
            {"type": "python_output", "text": str(count)},
            {
                "type": "text",
                "text": f"\nThe letter '{letter}' appears {count} {times} in '{word}'.\n#### {count}",
            },
        ]
        return {
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": parts}],
            "answer": str(count),
        }

    def evaluate(self, conversation: Conversation, completion: str) -> float:
        return float(same_number(extract_answer(completion), conversation["answer"]))
