"""Reward integrity: HumanEval scores through the sandbox; canonical solutions pass, mutants and
early exits score 0."""

from __future__ import annotations

import gzip
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from llmstack.tasks.humaneval import HumanEval

pytestmark = pytest.mark.usefixtures("sandbox_method")  # skips where no OS isolation exists


def mutants(entry_point: str, solution: str) -> dict[str, str]:
    """Completions that must fail: no body, an exit before the tests, and a wrong return value."""
    shifted = (
        f"{solution}\n_right = {entry_point}\n\ndef {entry_point}(*args, **kwargs):\n"
        "    r = _right(*args, **kwargs)\n"
        "    if isinstance(r, bool):\n        return not r\n"
        "    if isinstance(r, (int, float)):\n        return r + 1\n"
        "    if isinstance(r, str):\n        return r + 'x'\n"
        "    if isinstance(r, (list, tuple)):\n        return r + type(r)([0])\n"
        "    return object()\n"
    )
    return {
        "return None": "    return None\n",
        "early exit": f"{solution}\nimport os\nos._exit(0)\n",
        "wrong return": shifted,
    }


def score_all(task: HumanEval, indices: list[int]) -> dict[tuple[int, str], float]:
    """Every canonical solution and its mutants, two sandboxes at a time (two cores)."""
    jobs = []
    for i in indices:
        conv = task.get(i)
        solution = task.rows[i]["canonical_solution"]
        jobs.append((i, "canonical", conv, solution))
        jobs += [(i, name, conv, code) for name, code in mutants(conv["entry_point"], solution).items()]
    with ThreadPoolExecutor(2) as pool:
        scores = pool.map(lambda job: task.evaluate(job[2], job[3]), jobs)
        return {(i, name): s for (i, name, _, _), s in zip(jobs, scores, strict=True)}


def test_all_canonical_solutions_pass_and_mutants_fail(shared_data):
    """All 164 problems x 4 programs: about 30 s on 2 cores with bubblewrap."""
    task = HumanEval(path=str(shared_data / "humaneval" / "HumanEval.jsonl.gz"), timeout_s=10.0)
    scores = score_all(task, list(range(len(task))))
    wrong = [(task.rows[i]["task_id"], name) for (i, name), s in scores.items() if s != (name == "canonical")]
    assert not wrong


def test_a_policy_that_exits_early_earns_zero(tmp_path):
    row = {
        "task_id": "Toy/0",
        "prompt": 'def add(a, b):\n    """Sum of a and b."""\n',
        "canonical_solution": "    return a + b\n",
        "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n",
        "entry_point": "add",
    }
    path = tmp_path / "toy.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps(row) + "\n")
    task = HumanEval(path=str(path))
    conv = task.get(0)
    assert task.evaluate(conv, "```python\ndef add(a, b):\n    return a + b\n```") == 1.0
    for hack in ("import sys\nsys.exit(0)", "raise SystemExit(0)", "import os\nos._exit(0)",
                 "import atexit, os\natexit.register(os._exit, 0)\nraise AssertionError"):  # fmt: skip
        assert task.evaluate(conv, f"```python\ndef add(a, b):\n    return 0\n{hack}\n```") == 0.0
