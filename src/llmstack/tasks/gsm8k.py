"""GSM8K: grade-school math word problems solved step by step with a calculator tool (generative).

    GSM8K(split="test", path="../shared/data/gsm8k/test.jsonl")  # or a folder with <split>.jsonl
    GSM8K(split="train")                                          # hub openai/gsm8k, config main

The reference solutions carry calculator annotations, "48/2 = <<48/2=24>>24 clips". Each becomes a
python tool call and its output in the assistant message, so the model learns to call the tool:
    [text "48/2 = ", python "48/2", python_output "24", text "24 clips ..."]
The final line "#### 72" stays; scoring compares the number after the last "####".
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

from llmstack.conversation import Conversation, text_of
from llmstack.tasks import hub_file, local_path, read_jsonl, read_parquet, seeded_subset
from llmstack.tasks.base import Task

HUB_REPO = "openai/gsm8k"
SPLITS = ("train", "test")
_CALC = re.compile(r"<<([^\n]*?)>>")
_FINAL = re.compile(r"####\s*\$?\s*([-+]?[\d,]*\.?\d+)")


def parse_gsm8k_answer(answer_text: str) -> list[dict]:
    """Assistant parts of a GSM8K solution: every <<expr=value>> becomes a python call + its output."""
    parts: list[dict] = []
    pos = 0
    for match in _CALC.finditer(answer_text):
        inner = match.group(1)
        if "=" not in inner:  # not a calculator annotation: leave it in the text
            continue
        expr, value = inner.rsplit("=", 1)
        if match.start() > pos:
            parts.append({"type": "text", "text": answer_text[pos : match.start()]})
        parts.append({"type": "python", "text": expr})
        parts.append({"type": "python_output", "text": value})
        pos = match.end()
    if pos < len(answer_text):
        parts.append({"type": "text", "text": answer_text[pos:]})
    return parts


def parts_to_gsm8k(parts: list[dict]) -> str:
    """Inverse of parse_gsm8k_answer: the original annotated solution text."""
    out: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if part["type"] == "python":
            has_output = i + 1 < len(parts) and parts[i + 1]["type"] == "python_output"
            value = parts[i + 1]["text"] if has_output else ""
            out.append(f"<<{part['text']}={value}>>")
            i += 2 if has_output else 1
        else:
            out.append(part["text"])
            i += 1
    return "".join(out)


def extract_answer(text: str) -> str | None:
    """The number after the last "####" in `text`, commas removed ("#### 1,000" -> "1000"), or None."""
    matches = _FINAL.findall(text)
    if not matches:
        return None
    return matches[-1].replace(",", "").lstrip("+")


def same_number(a: str | None, b: str | None) -> bool:
    """Numeric equality of two answer strings ("18" == "18.0"); False when either is missing or bad."""
    if a is None or b is None:
        return False
    try:
        return Decimal(a) == Decimal(b)
    except InvalidOperation:
        return False


class GSM8K(Task):
    name = "gsm8k"
    eval_type = "generative"

    def __init__(self, split: str = "test", path: str = "", size: int | None = None, seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"gsm8k: unknown split {split!r}; valid: {', '.join(SPLITS)}")
        self.split = split
        rows = self._read_local(local_path(self.name, path)) if path else self._read_hub()
        self.rows = [rows[i] for i in seeded_subset(len(rows), size, seed)]

    def _read_local(self, root: Path) -> list[dict]:
        if root.is_dir():
            root = local_path(self.name, root / f"{self.split}.jsonl")
        return read_parquet(root) if root.suffix == ".parquet" else list(read_jsonl(root))

    def _read_hub(self) -> list[dict]:
        return read_parquet(hub_file(HUB_REPO, f"main/{self.split}-00000-of-00001.parquet"))

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, index: int) -> Conversation:
        row = self.rows[index]
        return {
            "messages": [
                {"role": "user", "content": row["question"]},
                {"role": "assistant", "content": parse_gsm8k_answer(row["answer"])},
            ],
            "answer": extract_answer(row["answer"]),
        }

    def evaluate(self, conversation: Conversation, completion: str) -> float:
        reference = conversation.get("answer") or extract_answer(text_of(conversation["messages"][-1]))
        return float(same_number(extract_answer(completion), reference))
