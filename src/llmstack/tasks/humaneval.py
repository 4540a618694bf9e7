"""HumanEval: complete a Python function from its signature and docstring; unit tests decide (generative).

    HumanEval(path="../shared/data/humaneval/HumanEval.jsonl.gz")  # or empty: hub openai/openai_humaneval

Scoring runs prompt + extracted completion + the problem's tests + `check(entry_point)` in
`llmstack.sandbox.run_python`: an OS-isolated process (namespaces via bubblewrap or unshare) whose
pass must be proven by the harness after the tests ran, so an early exit scores 0. `isolation`
picks the method; "auto" fails closed where no isolation works, "none" is the weaker opt-in.
The completion may be the whole function (it redefines the stub from the prompt) or only its body
(it continues the stub), fenced in ```python or raw.
"""

from __future__ import annotations

import re

from llmstack.conversation import Conversation
from llmstack.tasks import hub_file, local_path, read_jsonl, read_parquet, seeded_subset
from llmstack.tasks.base import Task

HUB_REPO = "openai/openai_humaneval"
HUB_FILE = "openai_humaneval/test-00000-of-00001.parquet"
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(completion: str) -> str:
    """The code in a reply: the first ```python block (else the first fenced block), else the raw text.

    An unclosed fence (a reply cut off by the token limit) yields everything after it."""
    blocks = _FENCE.findall(completion)
    for lang, body in blocks:
        if lang.lower() in ("python", "py", "python3"):
            return body
    return blocks[0][1] if blocks else completion


def build_program(prompt: str, completion_code: str, test: str, entry_point: str) -> str:
    """The script that passes when the completion is correct."""
    return f"{prompt}{completion_code}\n\n{test}\n\ncheck({entry_point})\n"


class HumanEval(Task):
    name = "humaneval"
    eval_type = "generative"

    def __init__(
        self,
        split: str = "test",
        path: str = "",
        size: int | None = None,
        seed: int = 0,
        timeout_s: float = 5.0,
        memory_mb: int = 1024,
        isolation: str = "auto",
    ):
        if split != "test":
            raise ValueError(f"humaneval: only split 'test' exists, got {split!r}")
        if path:
            file = local_path(self.name, path)
            rows = read_parquet(file) if file.suffix == ".parquet" else list(read_jsonl(file))
        else:
            rows = read_parquet(hub_file(HUB_REPO, HUB_FILE))
        self.rows = [rows[i] for i in seeded_subset(len(rows), size, seed)]
        self.timeout_s, self.memory_mb, self.isolation = timeout_s, memory_mb, isolation

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, index: int) -> Conversation:
        r = self.rows[index]
        user = (
            "Complete the following Python function. Reply with the whole function in a ```python block."
            f"\n\n```python\n{r['prompt']}```"
        )
        return {
            "messages": [
                {"role": "user", "content": user},
                {"role": "assistant", "content": f"```python\n{r['prompt']}{r['canonical_solution']}```"},
            ],
            "task_id": r["task_id"],
            "prompt": r["prompt"],
            "test": r["test"],
            "entry_point": r["entry_point"],
        }

    def evaluate(self, conversation: Conversation, completion: str) -> float:
        from llmstack.sandbox import run_python

        program = build_program(
            conversation["prompt"],
            extract_code(completion),
            conversation["test"],
            conversation["entry_point"],
        )
        result = run_python(program, timeout_s=self.timeout_s, memory_mb=self.memory_mb, isolation=self.isolation)
        return float(result.ok)
