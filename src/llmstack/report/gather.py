"""Reading a run: runs/<run>/run.json, then what each stage folder it names says about itself.

`run.json` is `{"run": name, "stages": {instance: "artifacts/<stage>/<key>"}}`, the folders relative
to the project folder (the run folder's grandparent). Stages write `meta.json` last, so a folder
without one has not finished: its result file is not read (it may be half a story) and its row
shows "—". Its `metrics.jsonl` is read either way, so a running stage's curves still show. Which
file holds a stage's results and the order stages come in are the stage table's
(llmstack.pipeline): nothing here names a stage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmstack.artifacts import META_FILE, read_json
from llmstack.pipeline import EACH_CHAT_MODEL, EVALUATED, STAGES, Input, instance_name, run_order

HISTORY_FILE = "metrics.jsonl"  # per-step curves: written while a stage runs, so never declared
REWARD_KEY = "rl/reward"  # the metrics.jsonl name llmstack.rl gives its mean reward
LOSS_KEY = "train/loss"  # the metrics.jsonl name llmstack.train gives its training loss

# Roles the report needs, read off the stage table.
TRAINED = [s.name for s in STAGES.values() if s.distributed]  # stages that train a model
BASE_MODEL = next(s.name for s in STAGES.values() if s.chat_alias)  # the pretrained model
BASE_LABEL = STAGES[BASE_MODEL].chat_label
# the stage that scores the pretrained model: it reads that model and makes none
BASE_EVAL = next(
    s.name for s in STAGES.values() if Input(BASE_MODEL, "model") in s.inputs.values() and "model" not in s.outputs
)
# what pretraining reads, {input name: stage}: the text and the tokenizer
BASE_INPUTS = {name: i.stage for name, i in STAGES[BASE_MODEL].inputs.items()}
PER_MODEL = [s.name for s in STAGES.values() if any(i.stage == EACH_CHAT_MODEL for i in s.inputs.values())]
# {chat model: the run.json instance that scores it}, least trained first
CHAT_EVALS = {model: instance_name(evaluator, model) for model in EVALUATED for evaluator in PER_MODEL}


@dataclass
class StageResult:
    """What one stage folder says about itself; a folder without meta.json says nothing but curves."""

    name: str  # the run.json instance: "pretrain", "eval/sft"
    dir: Path
    meta: dict[str, Any] | None = None  # meta.json, None until the stage has finished
    result: dict[str, Any] | None = None  # its declared result file (metrics.json, eval.json...)
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl

    @property
    def stage(self) -> str:
        return self.name.split("/")[0]

    @property
    def done(self) -> bool:
        return self.meta is not None

    @property
    def folder(self) -> str:
        return f"{self.dir.parent.name}/{self.dir.name}"

    def info(self, key: str, default: Any = None) -> Any:
        """One meta.json field (device, seconds, started...), or `default` before the stage finishes."""
        return (self.meta or {}).get(key, default)

    @property
    def config(self) -> dict[str, Any]:
        """The stage's config slice by section, as its meta.json records it."""
        return self.info("config") or {}


@dataclass
class RunResults:
    name: str
    dir: Path
    stages: dict[str, StageResult]  # in DAG order

    def result(self, name: str) -> dict[str, Any]:
        """A stage's result dict, or {} when the stage is absent or has not finished."""
        st = self.stages.get(name)
        return (st.result or {}) if st else {}

    def history(self, name: str) -> list[dict[str, Any]]:
        st = self.stages.get(name)
        return st.history if st else []

    def having(self, key: str) -> list[str]:
        """The stages whose curves carry `key`, in DAG order (e.g. every stage that logs a reward)."""
        return [n for n, st in self.stages.items() if any(key in e for e in st.history)]


def read_dict(path: Path) -> dict[str, Any] | None:
    """A JSON file, None when absent; a corrupt one fails with one line that names it."""
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); rerun its stage") from err


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill mid-write; the rest of the curve is still good
    return out


def result_file(stage: str) -> str:
    """The file holding a stage's results, as the stage table declares it."""
    if stage not in STAGES:
        raise ValueError(f"run.json names a stage llmstack does not have: {stage!r} (stages: {', '.join(STAGES)})")
    row = STAGES[stage]
    return row.declared[row.result]


def load_stage(name: str, path: Path) -> StageResult:
    st = StageResult(name, path, meta=read_dict(path / META_FILE), history=read_jsonl(path / HISTORY_FILE))
    if st.done:
        st.result = read_dict(path / result_file(st.stage))
    return st


ORDER = run_order()  # every instance a run can have, in DAG order


def _order(name: str) -> int:
    return ORDER.index(name) if name in ORDER else len(ORDER)


def load_run(run_dir: Path | str) -> RunResults:
    """Read runs/<run>/run.json and every stage folder it names."""
    run_dir = Path(run_dir)
    manifest = read_dict(run_dir / "run.json")
    if manifest is None:
        raise FileNotFoundError(f"{run_dir / 'run.json'} not found: run the workflow first (snakemake --cores all)")
    project = run_dir.resolve().parent.parent  # runs/<run> sits in the project folder
    folders = manifest.get("stages", {})
    stages = {n: load_stage(n, project / folders[n]) for n in sorted(folders, key=_order)}
    return RunResults(str(manifest.get("run", run_dir.name)), run_dir, stages)


def base_bpb(run: RunResults) -> Any:
    """Base model val bpb: its evaluation's (more tokens) when present, else pretraining's last."""
    return run.result(BASE_EVAL).get("val/bpb", run.result(BASE_MODEL).get("val/bpb"))


def reward_stages(run: RunResults) -> list[str]:
    """Stages that learn from rewards: their curves or results record one."""
    logged = run.having(REWARD_KEY)
    return [n for n in run.stages if n in logged or "reward_first" in run.result(n)]


def eval_tasks(run: RunResults) -> list[str]:
    """Every chat eval task of the run, in the order the evals list them."""
    tasks: list[str] = []
    for instance in CHAT_EVALS.values():
        tasks += [t for t in run.result(instance).get("tasks") or {} if t not in tasks]
    return tasks


def final_chat_model(run: RunResults) -> str | None:
    """The most trained chat model that has been evaluated."""
    return next((m for m in reversed(CHAT_EVALS) if run.result(CHAT_EVALS[m])), None)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of a nested dict (`{"model": {"depth": 4}}` -> `{"model.depth": 4}`)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def run_settings(run: RunResults) -> dict[str, Any]:
    """Every config value of a run, dotted (`model.depth`), from its finished stages' meta.json.

    Only config sections count: a top-level scalar (eval's `model_stage`) names an instance, not a
    setting."""
    flat: dict[str, Any] = {}
    for st in run.stages.values():
        for section, values in st.config.items():
            if isinstance(values, dict):
                flat.update(flatten(values, f"{section}."))
    return flat
