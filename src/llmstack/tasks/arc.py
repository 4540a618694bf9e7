"""ARC (AI2 Reasoning Challenge): grade-school science multiple choice, Easy and Challenge (categorical).

    ARC(subset="ARC-Easy", split="test", path="../shared/data/arc")  # <path>/ARC-Easy-Test.jsonl
    ARCChallenge(split="train")                                      # hub allenai/ai2_arc

Local files use the AI2 JSONL layout: {"question": {"stem", "choices": [{"label", "text"}]},
"answerKey"}; `path` is such a file or a folder holding `<subset>-<Split>.jsonl`. Choice labels are
A-E or 1-5 in the source; both become letters by position, so every conversation answers A-E.
"""

from __future__ import annotations

from pathlib import Path

from llmstack.conversation import Conversation
from llmstack.tasks import hub_file, local_path, read_jsonl, read_parquet, seeded_subset
from llmstack.tasks.base import Task
from llmstack.tasks.mmlu import multiple_choice_conversation, score_letter

SUBSETS = ("ARC-Easy", "ARC-Challenge")
HUB_REPO = "allenai/ai2_arc"
SPLITS = {
    "train": "train",
    "validation": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
}
LOCAL_SPLIT_NAMES = {"train": "Train", "validation": "Dev", "test": "Test"}


def parse_arc_row(row: dict) -> dict:
    """One AI2-JSONL or hub-parquet row as {"id", "question", "choices", "answer" (index)}."""
    question = row["question"]
    if isinstance(question, dict):  # AI2 JSONL: question = {"stem", "choices": [{"label", "text"}]}
        stem = question["stem"]
        labels = [c["label"] for c in question["choices"]]
        texts = [c["text"] for c in question["choices"]]
    else:  # hub parquet: question is the stem, choices = {"label": [...], "text": [...]}
        stem, labels, texts = question, list(row["choices"]["label"]), list(row["choices"]["text"])
    key = str(row["answerKey"]).strip()
    if key not in labels:
        raise ValueError(f"ARC row {row.get('id')!r}: answerKey {key!r} is not one of the labels {labels}")
    return {"id": row.get("id"), "question": stem, "choices": texts, "answer": labels.index(key)}


class ARC(Task):
    name = "arc"
    eval_type = "categorical"

    def __init__(
        self,
        subset: str = "ARC-Easy",
        split: str = "test",
        path: str = "",
        size: int | None = None,
        seed: int = 0,
    ):
        if subset not in SUBSETS:
            raise ValueError(f"arc: unknown subset {subset!r}; valid: {', '.join(SUBSETS)}")
        if split not in SPLITS:
            raise ValueError(f"arc: unknown split {split!r}; valid: {', '.join(SPLITS)}")
        self.subset, self.split = subset, SPLITS[split]
        raw = self._read_local(local_path(self.name, path)) if path else self._read_hub()
        rows = [parse_arc_row(r) for r in raw]
        self.rows = [rows[i] for i in seeded_subset(len(rows), size, seed)]

    def _read_local(self, root: Path) -> list[dict]:
        if root.is_dir():
            root = root / f"{self.subset}-{LOCAL_SPLIT_NAMES[self.split]}.jsonl"
            local_path(self.name, root)
        if root.suffix == ".parquet":
            return read_parquet(root)
        return list(read_jsonl(root))

    def _read_hub(self) -> list[dict]:
        return read_parquet(hub_file(HUB_REPO, f"{self.subset}/{self.split}-00000-of-00001.parquet"))

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, index: int) -> Conversation:
        r = self.rows[index]
        return multiple_choice_conversation(r["question"], r["choices"], r["answer"], id=r["id"])

    def evaluate(self, conversation: Conversation, completion: str) -> float:
        return score_letter(conversation, completion)


class ARCEasy(ARC):
    name = "arc_easy"

    def __init__(self, split: str = "test", path: str = "", size: int | None = None, seed: int = 0):
        super().__init__("ARC-Easy", split, path, size, seed)


class ARCChallenge(ARC):
    name = "arc_challenge"

    def __init__(self, split: str = "test", path: str = "", size: int | None = None, seed: int = 0):
        super().__init__("ARC-Challenge", split, path, size, seed)
