"""CORE-style in-context tasks for base models: parsing and few-shot prompts, no model code.

    task = load_core_task("arc_easy", data_dir="../shared/data")
    ex = task.examples()[0]           # {"kind": "mc", "contexts": [q], "continuations": [...], "gold": 1}
    shots = task.fewshot(0, k=3)
    prompts = build_prompts(ex, shots, task.info.delimiter)  # one {"context", "continuation"} per candidate

The CORE metric (DCLM) scores a base model on llm-foundry in-context tasks:
- "mc" (multiple choice): one context, several continuations; correct = the gold continuation has the
  lowest mean loss;
- "schema" (Winograd style): several contexts, one continuation; correct = the gold context gives the
  continuation the lowest mean loss;
- "lm" (language modelling): one context, one continuation; correct = greedy decoding reproduces it.
Accuracy is then centred on the task's random-guess baseline, `centered(acc, baseline)`, and CORE is
the mean over tasks. Scoring needs a model and lives with the evaluation code; this module only
gives it clean structures.
"""

from __future__ import annotations

import bz2
import random
from dataclasses import dataclass
from pathlib import Path

from llmstack.tasks import local_path, read_jsonl

KINDS = ("mc", "schema", "lm")


@dataclass(frozen=True)
class CoreTaskInfo:
    """One in-context task: file (relative to the data folder), kind, few-shot counts, chance level."""

    label: str
    path: str
    kind: str
    num_fewshot: tuple[int, ...]
    baseline: float  # accuracy of random guessing (0.0 where guessing cannot hit)
    delimiter: str = " "  # between context and continuation (llm-foundry continuation_delimiter)


# Few-shot counts and delimiters: llm-foundry scripts/eval/yamls/tasks_v0.3.yaml (tasks_v0.2.yaml
# for the two marked so). Baselines: llm-foundry scripts/eval/local_data/EVAL_GAUNTLET.md (its
# 11df92c version lists 0% for cs_algorithms and repeat_copy_logic); it lists none for
# bigbench_language_identification, where 0.25 is chance with its 4 choices on every row.
# Few-shot counts of suites that reuse these files (e.g. DCLM's CORE) can differ: pass k explicitly.
_ANSWER = "\nAnswer: "
_WK, _CR, _LU = "core/world_knowledge/", "core/commonsense_reasoning/", "core/language_understanding/"
_SP, _RC = "core/symbolic_problem_solving/", "core/reading_comprehension/"
# fmt: off
CORE_TASKS: dict[str, CoreTaskInfo] = {
    info.label: info
    for info in (
        CoreTaskInfo("arc_easy", _WK + "arc_easy.jsonl", "mc", (3,), 0.25, _ANSWER),
        CoreTaskInfo("arc_challenge", _WK + "arc_challenge.jsonl", "mc", (3, 25), 0.25, _ANSWER),
        CoreTaskInfo("jeopardy", _WK + "jeopardy_all.jsonl", "lm", (3,), 0.0, _ANSWER),
        CoreTaskInfo("bigbench_qa_wikidata", _WK + "bigbench_qa_wikidata.jsonl", "lm", (3,), 0.0),
        CoreTaskInfo("copa", _CR + "copa.jsonl", "mc", (0,), 0.5),
        CoreTaskInfo("commonsense_qa", _CR + "commonsense_qa.jsonl", "mc", (0,), 0.25),
        CoreTaskInfo("piqa", _CR + "piqa.jsonl", "mc", (0,), 0.5, _ANSWER),
        CoreTaskInfo("openbook_qa", _CR + "openbook_qa.jsonl", "mc", (10,), 0.25),
        CoreTaskInfo("lambada_openai", _LU + "lambada_openai.jsonl", "lm", (0,), 0.0),
        CoreTaskInfo("hellaswag", "hellaswag/hellaswag_val_full.txt.bz2", "mc", (0, 10), 0.25),
        CoreTaskInfo("winograd", _LU + "winograd_wsc.jsonl", "schema", (3,), 0.5),
        CoreTaskInfo("winogrande", _LU + "winogrande.jsonl", "schema", (5,), 0.5),
        CoreTaskInfo("bigbench_language_identification",  # few-shot count from v0.2
                     _LU + "bigbench_language_identification.jsonl", "mc", (10,), 0.25),
        CoreTaskInfo("bigbench_dyck_languages", _SP + "bigbench_dyck_languages.jsonl", "lm", (5,), 0.0),
        CoreTaskInfo("agi_eval_lsat_ar", _SP + "agi_eval_lsat_ar.jsonl", "mc", (5,), 0.25),
        CoreTaskInfo("bigbench_cs_algorithms", _SP + "bigbench_cs_algorithms.jsonl", "lm", (10,), 0.0),
        CoreTaskInfo("bigbench_operators", _SP + "bigbench_operators.jsonl", "lm", (3,), 0.0),
        CoreTaskInfo("bigbench_repeat_copy_logic",  # few-shot count from v0.2
                     _SP + "bigbench_repeat_copy_logic.jsonl", "lm", (10,), 0.0),
        CoreTaskInfo("boolq", _RC + "boolq.jsonl", "mc", (0,), 0.5, _ANSWER),
    )
}
# fmt: on


def centered(acc: float, baseline: float) -> float:
    """Accuracy above chance, rescaled so chance is 0 and perfect is 1 (can go below 0)."""
    if not 0.0 <= baseline < 1.0:
        raise ValueError(f"baseline must be in [0, 1), got {baseline}")
    return (acc - baseline) / (1.0 - baseline)


def core_metric(accuracies: dict[str, float]) -> float:
    """Mean centred accuracy over the CORE_TASKS labels given (the CORE score of that task set)."""
    unknown = set(accuracies) - set(CORE_TASKS)
    if unknown or not accuracies:
        raise ValueError(f"core_metric needs CORE_TASKS labels, got unknown {sorted(unknown)} or none")
    return sum(centered(acc, CORE_TASKS[label].baseline) for label, acc in accuracies.items()) / len(
        accuracies
    )


def _join(context: str, delimiter: str, continuation: str) -> tuple[str, str]:
    """Split context + delimiter + continuation so the continuation carries the separating space.

    Tokenizers attach a leading space to the word after it (" Paris"), so the boundary space goes to
    the continuation; doubled spaces at the seam (a query that already ends in a space) collapse."""
    left = context + delimiter
    stripped = left.rstrip(" ")
    if stripped != left:
        return stripped, " " + continuation.lstrip(" ")
    return left, continuation


def _solved(example: dict, delimiter: str) -> str:
    """A few-shot example written out with its correct answer."""
    gold = example["gold"]
    if example["kind"] == "schema":
        ctx, cont = example["contexts"][gold], example["continuations"][0]
    else:
        ctx, cont = example["contexts"][0], example["continuations"][gold]
    return "".join(_join(ctx, delimiter, cont))


def build_prompts(
    example: dict, fewshot_examples: list[dict], delimiter: str = " ", example_delimiter: str = "\n\n"
) -> list[dict]:
    """One {"context", "continuation"} per candidate (per choice for mc, per context option for
    schema, the single pair for lm), with the solved few-shot examples prepended to the context.
    Score the continuation given the context; context + continuation is the full text."""
    prefix = "".join(_solved(shot, delimiter) + example_delimiter for shot in fewshot_examples)
    if example["kind"] == "schema":
        pairs = [_join(ctx, delimiter, example["continuations"][0]) for ctx in example["contexts"]]
    else:
        pairs = [_join(example["contexts"][0], delimiter, cont) for cont in example["continuations"]]
    return [{"context": prefix + ctx, "continuation": cont} for ctx, cont in pairs]


def parse_icl_row(row: dict) -> dict:
    """One llm-foundry ICL row as {"kind", "contexts", "continuations", "gold"}."""
    if "query" in row and "choices" in row:
        return {
            "kind": "mc",
            "contexts": [row["query"]],
            "continuations": list(row["choices"]),
            "gold": int(row["gold"]),
        }
    if "context_options" in row:
        return {
            "kind": "schema",
            "contexts": list(row["context_options"]),
            "continuations": [row["continuation"]],
            "gold": int(row["gold"]),
        }
    if "context" in row and "continuation" in row:
        return {"kind": "lm", "contexts": [row["context"]], "continuations": [row["continuation"]], "gold": 0}
    raise ValueError(f"row with keys {sorted(row)} is not an llm-foundry ICL row (mc, schema or lm)")


class CoreTask:
    """The examples of one in-context task file, with deterministic few-shot sampling."""

    def __init__(self, path: str | Path, info: CoreTaskInfo | None = None, limit: int | None = None):
        self.path = local_path(info.label if info else "core", path)
        self.info = info
        self._examples = self._load()
        kinds = {ex["kind"] for ex in self._examples}
        if info is not None and kinds - {info.kind}:
            raise ValueError(f"{self.path}: expected {info.kind} rows, found {sorted(kinds)}")
        bad = [i for i, ex in enumerate(self._examples) if not 0 <= ex["gold"] < self._n_candidates(ex)]
        if bad:
            raise ValueError(f"{self.path}: gold index out of range in example {bad[0]}")
        if limit is not None:
            self._examples = self._examples[:limit]

    def _load(self) -> list[dict]:
        return [parse_icl_row(row) for row in read_jsonl(self.path)]

    @staticmethod
    def _n_candidates(example: dict) -> int:
        return len(example["contexts"] if example["kind"] == "schema" else example["continuations"])

    def __len__(self) -> int:
        return len(self._examples)

    def examples(self) -> list[dict]:
        return self._examples

    def fewshot(self, index: int, k: int, seed: int = 1234) -> list[dict]:
        """k other examples, the same for a given (index, k, seed) on every run and machine."""
        if k >= len(self._examples):
            raise ValueError(f"{self.path}: {k} few-shot examples requested from {len(self._examples)}")
        others = [i for i in range(len(self._examples)) if i != index]
        return [self._examples[i] for i in random.Random(seed + index).sample(others, k)]

    def prompts(self, index: int, k: int | None = None, seed: int = 1234) -> list[dict]:
        """build_prompts for example `index` with k shots (default: the task's first few-shot count)."""
        if k is None:
            k = self.info.num_fewshot[0] if self.info else 0
        delimiter = self.info.delimiter if self.info else " "
        return build_prompts(self._examples[index], self.fewshot(index, k, seed) if k else [], delimiter)


class HellaSwag(CoreTask):
    """HellaSwag in the 6-lines-per-item text layout: "<activity>: <context>", gold index, 4 endings."""

    def _load(self) -> list[dict]:
        opener = bz2.open if self.path.suffix == ".bz2" else open
        with opener(self.path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        while lines and not lines[-1].strip():
            lines.pop()
        if len(lines) % 6:
            raise ValueError(
                f"{self.path}: {len(lines)} lines is not a multiple of 6 (context, gold, 4 endings)"
            )
        examples = []
        for start in range(0, len(lines), 6):
            context, gold, *endings = lines[start : start + 6]
            if not gold.strip().isdigit():
                raise ValueError(f"{self.path}:{start + 2}: gold ending index {gold!r} is not a number")
            examples.append(
                {"kind": "mc", "contexts": [context], "continuations": endings, "gold": int(gold)}
            )
        return examples


def load_core_task(label: str, data_dir: str | Path, limit: int | None = None) -> CoreTask:
    """The CORE_TASKS entry `label`, read from `data_dir` (the folder holding core/ and hellaswag/)."""
    if label not in CORE_TASKS:
        raise ValueError(f"unknown CORE task {label!r}; valid: {', '.join(CORE_TASKS)}")
    info = CORE_TASKS[label]
    cls = HellaSwag if label == "hellaswag" else CoreTask
    return cls(Path(data_dir) / info.path, info=info, limit=limit)
