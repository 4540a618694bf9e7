"""CORE-style scoring of a base model on llm-foundry in-context tasks (the DCLM CORE metric).

    tasks = load_core_tasks(["hellaswag_zeroshot", "arc_easy"], data_dir="../shared/data")
    results = evaluate_core(model, tok, tasks, max_per_task=500)
    results["arc_easy"]       # {"accuracy": 0.41, "centered": 0.21, "n": 500, "baseline": 0.25, "fewshot": 3}
    core_metric(results)      # mean centred accuracy over the tasks evaluated

Scoring (DCLM; nanochat's core_eval does the same): every candidate of an example becomes one row
of BOS + few-shot prompt + context + continuation, cut from the left to the model's context;
- "mc" and "schema": the prediction is the candidate whose continuation tokens have the lowest mean
  loss (mc: one context, several continuations; schema: several contexts, one continuation);
- "lm": correct when greedy argmax reproduces every continuation token.
Rows are padded on the right and batched under a token budget; causal attention never looks at the
padding, so batching changes no score (beyond float rounding under bf16). A task name is a
CORE_TASKS label (its first few-shot count), `<label>_zeroshot`, or `<label>_<k>shot`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from llmstack.device import autocast_context, autocast_dtype
from llmstack.tasks import hub_file, seeded_subset
from llmstack.tasks.core import CORE_TASKS, CoreTask, HellaSwag, centered, load_core_task
from llmstack.tokenizer import Tokenizer

# A hub dataset holding the task files in the same layout as a local core_data_dir (core/...,
# hellaswag/...). The public CORE bundle is not published on the Hugging Face hub, so there is no
# default: name a mirror here, or point base_eval.core_data_dir at a local copy.
HUB_REPO_ENV = "LLMSTACK_CORE_HUB_REPO"
SUBSET_SEED = 1234  # which examples a max_per_task cap keeps (same on every run)
FEWSHOT_SEED = 1234
_SHOTS = re.compile(r"^(?P<label>.+?)_(?:(?P<zero>zeroshot)|(?P<k>\d+)shot)$")


@dataclass
class LoadedTask:
    name: str  # as configured, e.g. "hellaswag_zeroshot"; the key in the results
    task: CoreTask
    fewshot: int

    @property
    def baseline(self) -> float:
        return self.task.info.baseline


def parse_task_name(name: str) -> tuple[str, int | None]:
    """(CORE_TASKS label, few-shot count or None for the task's default) of a configured task name."""
    if name in CORE_TASKS:
        return name, None
    m = _SHOTS.match(name)
    if m and m["label"] in CORE_TASKS:
        return m["label"], 0 if m["zero"] else int(m["k"])
    raise ValueError(
        f"unknown CORE task {name!r}: use a label ({', '.join(CORE_TASKS)}), optionally suffixed _zeroshot or _<k>shot"
    )


def load_core_tasks(names: list[str], data_dir: str | Path = "") -> list[LoadedTask]:
    """The configured tasks, read from `data_dir` (the folder holding core/ and hellaswag/) or, when
    it is empty, downloaded from the hub dataset named by $LLMSTACK_CORE_HUB_REPO."""
    parsed = [(name, *parse_task_name(name)) for name in names]  # every name checked before any I/O
    repo = os.environ.get(HUB_REPO_ENV, "").strip()
    if parsed and not data_dir and not repo:
        raise ValueError(
            "base_eval.core_data_dir is empty and no hub copy of the CORE tasks is configured: set "
            "base_eval.core_data_dir=<folder holding core/ and hellaswag/>, or "
            f"{HUB_REPO_ENV}=<hub dataset in that layout>, or base_eval.core_tasks=[] to skip CORE"
        )
    out = []
    for name, label, k in parsed:
        info = CORE_TASKS[label]
        if data_dir:
            task = load_core_task(label, data_dir)
        else:  # HubUnavailableError (one line naming the fix) when offline
            task = (HellaSwag if label == "hellaswag" else CoreTask)(hub_file(repo, info.path), info=info)
        out.append(LoadedTask(name, task, info.num_fewshot[0] if k is None else k))
    return out


# ----------------------------------------------------------------------------------- scoring


def encode_candidates(tok: Tokenizer, prompts: list[dict], seq_len: int) -> list[tuple[list[int], int]]:
    """(token ids, index of the first continuation token) for each {"context", "continuation"}.

    Context and continuation are encoded separately so the boundary is exact (the continuation
    carries its leading space, and sentencepiece never merges across one). Rows longer than
    `seq_len` lose tokens from the left: few-shot examples go first, the continuation stays."""
    rows = []
    for p in prompts:
        ctx = [tok.bos_id, *tok.encode(p["context"])]
        cont = tok.encode(p["continuation"])
        if not cont:
            raise ValueError(f"empty continuation after context {p['context'][-60:]!r}")
        ids = ctx + cont
        cut = max(0, len(ids) - seq_len)
        rows.append((ids[cut:], max(1, len(ctx) - cut)))
    return rows


@torch.no_grad()
def score_rows(
    model: torch.nn.Module, rows: list[tuple[list[int], int]], pad_id: int, dtype: torch.dtype | None
) -> list[tuple[float, bool]]:
    """(mean loss over the continuation, greedy argmax reproduces it) for each row, in one forward."""
    device = next(model.parameters()).device
    width = max(len(ids) for ids, _ in rows)
    x = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, (ids, _) in enumerate(rows):  # right padding: causal attention never sees it
        x[i, : len(ids)] = torch.tensor(ids)
    x = x.to(device)
    with autocast_context(device, dtype):
        logits = model(x)
    out = []
    for i, (ids, start) in enumerate(rows):
        predicted = logits[i, start - 1 : len(ids) - 1].float()  # position t predicts token t + 1
        target = x[i, start : len(ids)]
        loss = F.cross_entropy(predicted, target, reduction="mean").item()
        out.append((loss, bool((predicted.argmax(dim=-1) == target).all())))
    return out


def is_correct(kind: str, scores: list[tuple[float, bool]], gold: int) -> bool:
    """mc/schema: the gold candidate has the lowest mean loss; lm: greedy decoding reproduces it."""
    if kind == "lm":
        return scores[0][1]
    losses = [loss for loss, _ in scores]
    return losses.index(min(losses)) == gold


def score_examples(
    model: torch.nn.Module,
    tok: Tokenizer,
    examples: list[tuple[str, list[dict], int]],
    batch_tokens: int = 8192,
    dtype: torch.dtype | None = None,
    desc: str = "score",
    progress: bool = True,
) -> list[bool]:
    """Correctness of each (kind, prompts from build_prompts, gold index) example.

    Whole examples are packed into one forward while rows x longest row stays under
    `batch_tokens` (the fp32 logits are that many x vocab floats)."""
    seq_len = model.config.seq_len
    encoded = [encode_candidates(tok, prompts, seq_len) for _, prompts, _ in examples]
    correct: list[bool] = []
    bar = tqdm(total=len(examples), desc=desc, disable=not progress, leave=False, mininterval=1.0)
    start = 0
    while start < len(examples):
        end, rows = start, []
        while end < len(examples):
            grown = rows + encoded[end]
            if rows and len(grown) * max(len(ids) for ids, _ in grown) > batch_tokens:
                break
            rows, end = grown, end + 1
        scores = score_rows(model, rows, tok.bos_id, dtype)
        offset = 0
        for (kind, _, gold), cands in zip(examples[start:end], encoded[start:end], strict=True):
            correct.append(is_correct(kind, scores[offset : offset + len(cands)], gold))
            offset += len(cands)
        bar.update(end - start)
        start = end
    bar.close()
    return correct


def evaluate_core_task(
    model: torch.nn.Module,
    tok: Tokenizer,
    loaded: LoadedTask,
    max_per_task: int,
    batch_tokens: int = 8192,
    progress: bool = True,
) -> dict:
    """Accuracy of one task on a deterministic subset of at most `max_per_task` examples (0: all)."""
    task, k = loaded.task, loaded.fewshot
    dtype = autocast_dtype(next(model.parameters()).device)
    indices = seeded_subset(len(task), max_per_task if max_per_task > 0 else None, SUBSET_SEED)
    examples = [
        (task.examples()[i]["kind"], task.prompts(i, k, FEWSHOT_SEED), task.examples()[i]["gold"]) for i in indices
    ]
    correct = score_examples(model, tok, examples, batch_tokens, dtype, loaded.name, progress)
    accuracy = sum(correct) / max(len(correct), 1)
    return {
        "accuracy": accuracy,
        "centered": centered(accuracy, loaded.baseline),
        "n": len(correct),
        "baseline": loaded.baseline,
        "fewshot": k,
    }


def evaluate_core(
    model: torch.nn.Module,
    tok: Tokenizer,
    tasks: list[LoadedTask],
    max_per_task: int,
    batch_tokens: int = 8192,
    progress: bool = True,
) -> dict[str, dict]:
    """{task name: {accuracy, centered, n, baseline, fewshot}} over the loaded tasks."""
    model.eval()
    return {t.name: evaluate_core_task(model, tok, t, max_per_task, batch_tokens, progress) for t in tasks}


def core_metric(results: dict[str, dict]) -> float | None:
    """Mean centred accuracy over the tasks evaluated (the CORE score of that set); None if none."""
    if not results:
        return None
    return sum(r["centered"] for r in results.values()) / len(results)
