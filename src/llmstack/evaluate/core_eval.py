"""CORE scoring of a base model on a DCLM eval bundle, as nanochat computes it.

    root = ensure_bundle(cfg.core_data_dir)          # on disk, or downloaded once (verified)
    tasks = load_core_tasks(["hellaswag_zeroshot", "arc_easy"], root)   # or ["all"]
    results = evaluate_core(model, tok, tasks, max_per_task=500)
    results["arc_easy"]       # {"accuracy": 0.41, "centered": 0.21, "n": 500, "baseline": 0.25, "fewshot": 10}
    core_metric(results)      # mean centred accuracy over the tasks evaluated

Scoring (DCLM; nanochat's core_eval does the same): every candidate of an example becomes one row
of BOS + few-shot prompt + context + continuation, cut from the left to the model's context;
- "mc" and "schema": the prediction is the candidate whose continuation tokens have the lowest mean
  loss (mc: one context, several continuations; schema: several contexts, one continuation);
- "lm": correct when greedy argmax reproduces every continuation token.
Rows are padded on the right and batched under a token budget; causal attention never looks at the
padding, so batching changes no score (beyond float rounding under bf16). Task names are the
labels of the bundle's core.yaml; few-shot counts and baselines are the bundle's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from llmstack.device import autocast_context, autocast_dtype
from llmstack.tasks import seeded_subset
from llmstack.tasks.core import (
    CoreTask,
    bundle_root,
    bundle_source,
    centered,
    load_bundle,
    load_core_task,
    select_tasks,
)
from llmstack.tokenizer import Tokenizer

SUBSET_SEED = 1234  # which examples a max_per_task cap keeps (same on every run)
FEWSHOT_SEED = 1234


@dataclass
class LoadedTask:
    name: str  # the core.yaml label; the key in the results
    task: CoreTask
    fewshot: int

    @property
    def baseline(self) -> float:
        return self.task.info.baseline


def ensure_bundle(core_data_dir: str = "", show_progress: bool = True) -> Path:
    """The bundle folder (holding core.yaml): `core_data_dir`, or the cache, downloading it there first.

    The zip is verified against its pinned sha256 and resumed from a partial file; it is unzipped
    into a temporary sibling folder that is renamed into place, so a crash never leaves half a bundle."""
    root = bundle_root(core_data_dir)
    if (root / "core.yaml").is_file() or core_data_dir:  # a configured folder is never written to
        return root
    from llmstack.data.download import download_url  # lazy: only a download needs it

    url, sha = bundle_source()
    root.parent.mkdir(parents=True, exist_ok=True)
    archive = download_url(url, root.parent / "eval_bundle.zip", sha, show_progress=show_progress)
    staging = Path(tempfile.mkdtemp(prefix=".eval_bundle.", dir=root.parent))
    try:
        with zipfile.ZipFile(archive) as z:
            z.extractall(staging)  # extractall drops absolute and ".." member paths
        found = [p.parent for p in staging.rglob("core.yaml")]
        if len(found) != 1:
            raise ValueError(f"{url}: expected one core.yaml in the zip, found {len(found)}")
        try:
            os.rename(found[0], root)
        except OSError:  # another process placed it first: keep theirs
            if not (root / "core.yaml").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    archive.unlink(missing_ok=True)
    return root


def load_core_tasks(names: list[str], root: str | Path | None) -> list[LoadedTask]:
    """The configured labels (or ["all"]) of the bundle at `root`, with the bundle's few-shot counts."""
    if not names:
        return []
    if root is None:
        raise ValueError("CORE tasks need an eval bundle: set base_eval.core_data_dir or base_eval.core_tasks=[]")
    bundle = load_bundle(root)
    out = []
    for info in select_tasks(names, bundle):  # every label checked before any task file is read
        task = load_core_task(info.label, root, bundle=bundle)
        if info.num_fewshot >= len(task):
            raise ValueError(f"{info.label}: {info.num_fewshot} few-shot examples need more than {len(task)} rows")
        out.append(LoadedTask(info.label, task, info.num_fewshot))
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
