"""MMLU: 4-way multiple-choice questions over 57 school and professional subjects (categorical).

    MMLU(split="test", path="../shared/data/mmlu")      # local csv folder: <path>/<split>/*.csv
    MMLU(split="train")                                 # hub cais/mmlu, auxiliary_train

Local layout: one csv per subject named `<subject>_<split>.csv`, in `<path>/<split>/` or directly
in `<path>`; rows are question, four choices, answer, with or without a header row, and the answer
given as a letter (original release) or a 0-based index (common re-hosts).
"""

from __future__ import annotations

import csv
from pathlib import Path

from llmstack.conversation import Conversation
from llmstack.tasks import hub_file, local_path, read_parquet, seeded_subset
from llmstack.tasks.base import Task

LETTERS = tuple("ABCDEFGH")
HUB_REPO = "cais/mmlu"
HUB_SPLITS = {
    "train": "auxiliary_train",
    "auxiliary_train": "auxiliary_train",
    "dev": "dev",
    "validation": "validation",
    "val": "validation",
    "test": "test",
}
HEADER = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]


def render_multiple_choice(question: str, choices: list[str], letters: tuple[str, ...] | list[str]) -> str:
    """User text of a multiple-choice question: the question, lettered choices, how to answer."""
    lines = [f"{letter}. {choice}" for letter, choice in zip(letters, choices, strict=True)]
    return f"{question}\n\n" + "\n".join(lines) + "\n\nAnswer with the letter of the correct choice."


def multiple_choice_conversation(
    question: str, choices: list[str], answer_index: int, **extra
) -> Conversation:
    """A categorical conversation: the assistant replies with the correct letter alone."""
    letters = list(LETTERS[: len(choices)])
    return {
        "messages": [
            {"role": "user", "content": render_multiple_choice(question, choices, letters)},
            {"role": "assistant", "content": letters[answer_index]},
        ],
        "letters": letters,
        "answer": letters[answer_index],
        **extra,
    }


def score_letter(conversation: Conversation, completion: str) -> float:
    """1.0 when a sampled reply starts with the correct letter (for generative use of a categorical task)."""
    reply = completion.strip().lstrip("(").upper()
    return float(reply[:1] == conversation["answer"] and (len(reply) == 1 or not reply[1].isalpha()))


def _answer_index(raw: str, where: str) -> int:
    raw = raw.strip().upper()
    if raw in LETTERS[:4]:
        return LETTERS.index(raw)
    if raw in ("0", "1", "2", "3"):
        return int(raw)
    raise ValueError(f"{where}: answer {raw!r} is neither A-D nor 0-3")


def read_mmlu_csv(path: Path, subject: str) -> list[dict]:
    """Rows of one subject file as {"question", "choices", "answer" (0-3), "subject"}."""
    with open(path, newline="", encoding="utf-8") as f:
        records = list(csv.reader(f))
    if records and [c.strip().lower() for c in records[0]] == HEADER:
        records = records[1:]
    rows = []
    for i, rec in enumerate(records, 1):
        if len(rec) != 6:
            raise ValueError(f"{path}: record {i} has {len(rec)} fields, expected 6 (question, A-D, answer)")
        rows.append(
            {
                "question": rec[0],
                "choices": rec[1:5],
                "answer": _answer_index(rec[5], f"{path} record {i}"),
                "subject": subject,
            }
        )
    return rows


class MMLU(Task):
    name = "mmlu"
    eval_type = "categorical"

    def __init__(
        self,
        split: str = "test",
        path: str = "",
        subjects: list[str] | None = None,
        size: int | None = None,
        seed: int = 0,
    ):
        self.split = split
        rows = self._read_local(local_path(self.name, path)) if path else self._read_hub()
        if subjects is not None:
            unknown = set(subjects) - {r["subject"] for r in rows}
            if unknown:
                raise ValueError(f"mmlu: subjects {sorted(unknown)} not found in split {split!r}")
            rows = [r for r in rows if r["subject"] in set(subjects)]
        self.rows = [rows[i] for i in seeded_subset(len(rows), size, seed)]

    def _read_local(self, root: Path) -> list[dict]:
        if root.is_file():
            files = [root]
        else:
            folder = root / self.split if (root / self.split).is_dir() else root
            files = sorted(folder.glob(f"*_{self.split}.csv")) or sorted(folder.glob("*.csv"))
        if not files:
            raise FileNotFoundError(f"mmlu: no <subject>_{self.split}.csv files under path={str(root)!r}")
        rows = []
        for f in files:
            subject = f.stem.removesuffix(f"_{self.split}")
            rows.extend(read_mmlu_csv(f, subject))
        return rows

    def _read_hub(self) -> list[dict]:
        if self.split not in HUB_SPLITS:
            raise ValueError(f"mmlu: unknown split {self.split!r}; valid: {', '.join(HUB_SPLITS)}")
        split = HUB_SPLITS[self.split]
        rows = read_parquet(hub_file(HUB_REPO, f"all/{split}-00000-of-00001.parquet"))
        if rows and "train" in rows[0]:  # older auxiliary_train layout nests each row under "train"
            rows = [r["train"] for r in rows]
        return [
            {
                "question": r["question"],
                "choices": list(r["choices"]),
                "answer": int(r["answer"]),
                "subject": r.get("subject") or "auxiliary",
            }
            for r in rows
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, index: int) -> Conversation:
        r = self.rows[index]
        return multiple_choice_conversation(r["question"], r["choices"], r["answer"], subject=r["subject"])

    def evaluate(self, conversation: Conversation, completion: str) -> float:
        return score_letter(conversation, completion)
