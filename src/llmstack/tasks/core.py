"""CORE in-context tasks as an eval bundle defines them: metadata, parsing, few-shot prompts; no model code.

    bundle = load_bundle("~/.cache/llmstack/eval_bundle")   # {label: CoreTaskInfo}, core.yaml order
    task = load_core_task("arc_easy", bundle_root)
    ex = task.examples()[0]           # {"kind": "mc", "contexts": [q], "continuations": [...], "gold": 1}
    prompts = task.prompts(0)         # the bundle's few-shot count; one {"context", "continuation"} per candidate

An eval bundle is DCLM's layout, the one nanochat downloads: `core.yaml` (icl_tasks: label,
dataset_uri, num_fewshot, icl_task_type, continuation_delimiter), `eval_meta_data.csv` (columns
"Eval Task" and "Random baseline", in percent) and `eval_data/<dataset_uri>`. Task kinds:
- "mc" (multiple choice): one context, several continuations; correct = the gold continuation has the
  lowest mean loss;
- "schema" (Winograd style): several contexts, one continuation; correct = the gold context gives the
  continuation the lowest mean loss;
- "lm" (language modelling): one context, one continuation; correct = greedy decoding reproduces it.
Accuracy is centred on the bundle's random baseline, `centered(acc, baseline)`, and CORE is the mean
over tasks. Few-shot counts and baselines come only from the bundle, so a CORE here is nanochat's.
"""

from __future__ import annotations

import bz2
import csv
import os
import random
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from llmstack.tasks import local_path, read_jsonl

# icl_task_type in core.yaml -> our kind
ICL_TYPES = {"multiple_choice": "mc", "schema": "schema", "language_modeling": "lm"}
ALL = "all"  # base_eval.core_tasks=[all]: every task of core.yaml


@dataclass(frozen=True)
class CoreTaskInfo:
    """One in-context task of a bundle: file (under eval_data/), kind, few-shot count, chance level."""

    label: str
    path: str
    kind: str
    num_fewshot: int
    baseline: float  # accuracy of random guessing, 0..1 (the csv's percentage / 100)
    delimiter: str = " "  # between context and continuation (llm-foundry continuation_delimiter)


def _bundle_error(root: Path, what: str) -> ValueError:
    return ValueError(f"eval bundle {root}: {what}")


def _read_baselines(root: Path) -> dict[str, float]:
    path = root / "eval_meta_data.csv"
    if not path.is_file():
        raise _bundle_error(root, "no eval_meta_data.csv")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"Eval Task", "Random baseline"} <= set(reader.fieldnames or ()):
            raise _bundle_error(root, "eval_meta_data.csv lacks the 'Eval Task' / 'Random baseline' columns")
        out = {}
        for row in reader:
            try:
                out[row["Eval Task"].strip()] = float(row["Random baseline"]) / 100.0
            except (TypeError, ValueError):
                raise _bundle_error(root, f"baseline {row['Random baseline']!r} of {row['Eval Task']!r}") from None
    return out


def load_bundle(root: str | Path) -> dict[str, CoreTaskInfo]:
    """{label: CoreTaskInfo} of the bundle at `root` (the folder holding core.yaml), in core.yaml order.
    Raises ValueError in one line on anything malformed or missing."""
    import yaml  # PyYAML: imported here so plan-time users without a bundle never pay for it

    root = Path(root).expanduser()
    if not (root / "core.yaml").is_file():
        raise _bundle_error(root, "no core.yaml (not an unzipped eval bundle)")
    baselines = _read_baselines(root)
    entries = (yaml.safe_load((root / "core.yaml").read_text(encoding="utf-8")) or {}).get("icl_tasks")
    if not isinstance(entries, list) or not entries:
        raise _bundle_error(root, "core.yaml has no icl_tasks list")
    bundle: dict[str, CoreTaskInfo] = {}
    for i, e in enumerate(entries):
        label = e.get("label") if isinstance(e, dict) else None
        if not label or e.get("icl_task_type") not in ICL_TYPES or "dataset_uri" not in e:
            raise _bundle_error(root, f"core.yaml icl_tasks[{i}] needs label, dataset_uri and a known icl_task_type")
        shots = e.get("num_fewshot", [0])
        shots = shots[0] if isinstance(shots, list) and shots else shots  # nanochat takes the first
        if not isinstance(shots, int) or shots < 0:
            raise _bundle_error(root, f"{label}: num_fewshot {e.get('num_fewshot')!r} is not a count")
        if label not in baselines:
            raise _bundle_error(root, f"{label}: no 'Random baseline' row in eval_meta_data.csv")
        if not 0.0 <= baselines[label] < 1.0:
            raise _bundle_error(root, f"{label}: random baseline {baselines[label]:.0%} is not in [0%, 100%)")
        kind, delim = ICL_TYPES[e["icl_task_type"]], e.get("continuation_delimiter", " ")
        bundle[label] = CoreTaskInfo(label, str(e["dataset_uri"]), kind, shots, baselines[label], delim)
    return bundle


def select_tasks(names: list[str], bundle: dict[str, CoreTaskInfo]) -> list[CoreTaskInfo]:
    """The configured labels (or every task for [all]) as bundle entries; unknown labels fail in one line."""
    if list(names) == [ALL]:
        return list(bundle.values())
    unknown = [n for n in names if n not in bundle]
    if unknown:
        raise ValueError(f"unknown CORE task(s) {unknown}: the bundle's core.yaml has {', '.join(bundle)} (or [all])")
    return [bundle[n] for n in names]


def centered(acc: float, baseline: float) -> float:
    """nanochat's centring (acc - b) / (1 - b): chance is 0, perfect is 1 (can go below 0)."""
    if not 0.0 <= baseline < 1.0:
        raise ValueError(f"baseline must be in [0, 1), got {baseline}")
    return (acc - baseline) / (1.0 - baseline)


def core_metric(accuracies: dict[str, float], bundle: dict[str, CoreTaskInfo]) -> float:
    """Mean centred accuracy over the bundle labels given (the CORE score of that task set)."""
    unknown = set(accuracies) - set(bundle)
    if unknown or not accuracies:
        raise ValueError(f"core_metric needs labels of the bundle, got unknown {sorted(unknown)} or none")
    return sum(centered(acc, bundle[label].baseline) for label, acc in accuracies.items()) / len(accuracies)


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
        """build_prompts for example `index` with k shots (default: the bundle's few-shot count)."""
        if k is None:
            k = self.info.num_fewshot if self.info else 0
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


def _task_class(path: str) -> type[CoreTask]:
    # DCLM's bundle ships HellaSwag as llm-foundry JSONL; the 6-line text layout is read too.
    return HellaSwag if path.endswith((".txt", ".txt.bz2")) else CoreTask


def load_core_task(
    label: str, root: str | Path, limit: int | None = None, bundle: dict[str, CoreTaskInfo] | None = None
) -> CoreTask:
    """Task `label` of the bundle at `root` (its core.yaml entry, its file under eval_data/)."""
    bundle = bundle if bundle is not None else load_bundle(root)
    (info,) = select_tasks([label], bundle)
    return _task_class(info.path)(Path(root).expanduser() / "eval_data" / info.path, info=info, limit=limit)


def count_rows(path: Path) -> int:
    """Examples in a task file without parsing them (plan-time few-shot check)."""
    if path.name.endswith((".txt", ".txt.bz2")):
        opener = bz2.open if path.suffix == ".bz2" else open
        with opener(path, "rt", encoding="utf-8") as f:
            return sum(1 for line in f if line.strip()) // 6
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


# ------------------------------------------------------------------- where the bundle lives

# The bundle nanochat uses (DCLM's eval data); the sha256 pins the bytes its CORE was computed on.
BUNDLE_URL = "https://karpathy-public.s3.us-west-2.amazonaws.com/eval_bundle.zip"
BUNDLE_SHA256 = "90a7c19e28ee7a52b4f6e1f87658deb9fde7f63deba2379045bdb1fe9ea5d200"
URL_ENV, SHA_ENV = "LLMSTACK_EVAL_BUNDLE_URL", "LLMSTACK_EVAL_BUNDLE_SHA256"  # a mirror or a test server
CACHE_ENV = "LLMSTACK_CACHE"
_TRUE = {"1", "ON", "YES", "TRUE"}


def bundle_source() -> tuple[str, str]:
    """(url, sha256) to download the bundle from: the public one, or $LLMSTACK_EVAL_BUNDLE_URL with
    its own $LLMSTACK_EVAL_BUNDLE_SHA256 (required: an unverified bundle would give unverified scores)."""
    url = os.environ.get(URL_ENV, "").strip()
    if not url:
        return BUNDLE_URL, BUNDLE_SHA256
    sha = os.environ.get(SHA_ENV, "").strip().lower()
    if len(sha) != 64:
        raise ValueError(f"{URL_ENV} is set but {SHA_ENV} is not a sha256: pin the bundle's checksum")
    return url, sha


def bundle_root(core_data_dir: str) -> Path:
    """The configured bundle folder, else the download cache ($LLMSTACK_CACHE or ~/.cache/llmstack)."""
    if core_data_dir:
        return Path(core_data_dir).expanduser()
    cache = os.environ.get(CACHE_ENV, "").strip() or Path.home() / ".cache" / "llmstack"
    return Path(cache).expanduser() / "eval_bundle"


def offline_reason(url: str, probe_s: float = 2.0) -> str | None:
    """Why `url` cannot be downloaded now (offline flag, no route in `probe_s`), or None."""
    for var in ("LLMSTACK_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in _TRUE:
            return f"{var} is set"
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=probe_s).close()
    except OSError as e:
        return f"{parts.hostname}:{port} unreachable ({type(e).__name__})"
    return None


def check_core_config(core_tasks: list[str], core_data_dir: str) -> None:
    """Plan-time check of base_eval's CORE settings; ValueError in one line naming the fix.

    A bundle on disk: every label is in core.yaml and every file holds more rows than its few-shot
    count (an example never serves as its own shot). No bundle: fine when it can be downloaded."""
    if not core_tasks:
        return
    root = bundle_root(core_data_dir)
    if not (root / "core.yaml").is_file():
        if core_data_dir:
            raise ValueError(
                f"base_eval.core_data_dir={core_data_dir!r} holds no core.yaml (point it at an unzipped eval bundle)"
            )
        url, _ = bundle_source()
        if reason := offline_reason(url):
            raise ValueError(
                f"base_eval.core_tasks needs the CORE eval bundle, which is not at {root} and cannot be "
                f"downloaded ({reason}): set base_eval.core_data_dir=<unzipped eval_bundle> or base_eval.core_tasks=[]"
            )
        return
    try:
        bundle = load_bundle(root)
        infos = select_tasks(core_tasks, bundle)
    except ValueError as err:
        raise ValueError(f"base_eval.core_tasks: {err}") from None
    for info in infos:
        path = root / "eval_data" / info.path
        if not path.is_file():
            raise ValueError(f"base_eval.core_tasks: {info.label}: {path} does not exist")
        if (rows := count_rows(path)) <= info.num_fewshot:
            raise ValueError(
                f"base_eval.core_tasks: {info.label} asks for {info.num_fewshot} few-shot examples but "
                f"{path} has {rows} rows (at most {max(rows - 1, 0)} can be shots)"
            )
