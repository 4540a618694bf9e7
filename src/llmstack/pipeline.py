"""The stage table: the one place that lists llmstack's stages and how they connect.

    data ──► tokenizer ──► pretrain ──► midtrain ──► sft ──► rl
                              │            │          │       │
                              └► base_eval └──────────┴───────┴──► eval (one per chat model)

Every other part reads this table: the planner (stage slices, keys, input keys), the Snakemake
rules (input functions, declared outputs, the shell line), the launcher (torchrun or not), the
report (order, result files) and the chat resolver (which models can chat, most trained first).
Adding a stage = one row here + one rule in workflow/rules/ + one module llmstack/stages/<name>.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmstack.artifacts import META_FILE

EACH_CHAT_MODEL = "*"  # an input stage that stands for every chat model: one instance per model


@dataclass(frozen=True)
class Input:
    stage: str  # the upstream stage (or EACH_CHAT_MODEL)
    output: str  # the name of one of its declared outputs


@dataclass(frozen=True)
class JobSize:
    """What one cluster job of the stage asks for unless told otherwise (Slurm: --cpus-per-task,
    --mem, --time); GPUs and nodes come from the stage's config (`nodes`, `gpus_per_node`)."""

    cpus: int
    mem_gb: int
    hours: float


@dataclass(frozen=True)
class Stage:
    name: str  # the rule, the entry module llmstack.stages.<name>, the folder artifacts/<name>/
    sections: tuple[str, ...]  # config sections in its slice (the last one is its own settings)
    inputs: dict[str, Input] = field(default_factory=dict)  # input name (--input NAME=path) -> source
    outputs: dict[str, str] = field(default_factory=dict)  # declared outputs: name -> file name
    result: str = "metrics"  # the output that holds its results (what the report reads)
    distributed: bool = False  # runs under torchrun when several devices/processes are asked for
    chat_model: bool = False  # a chat model: scored by the eval stage, served by chat
    chat_alias: str | None = None  # a non-chat model one can still talk to, under this name (--stage)
    job: JobSize = JobSize(cpus=4, mem_gb=16, hours=2)  # a cluster job's default size

    @property
    def declared(self) -> dict[str, str]:
        """Declared outputs including meta.json, which every stage writes last."""
        return {**self.outputs, "meta": META_FILE}

    @property
    def chat_label(self) -> str | None:
        """The name chat/serve use for this stage's model, or None when it has none to talk to."""
        return self.chat_alias or (self.name if self.chat_model else None)

    @property
    def upstream(self) -> list[str]:
        return sorted({i.stage for i in self.inputs.values()})


_TRAIN_JOB = dict(cpus=16, mem_gb=128)


def _model_outputs() -> dict[str, str]:
    return {"model": "model.pt", "metrics": "metrics.json"}


_TOKENIZER = Input("tokenizer", "model")

# In DAG order: a stage's inputs come before it.
STAGES: dict[str, Stage] = {
    s.name: s
    for s in [
        Stage("data", ("data",), outputs={"manifest": "manifest.json"}, result="manifest"),
        Stage(
            "tokenizer",
            ("tokenizer",),
            {"data": Input("data", "manifest")},
            {"model": "tokenizer.model", "stats": "tokenizer.json"},
            result="stats",
        ),
        Stage(
            "pretrain",
            ("model", "pretrain"),
            {"data": Input("data", "manifest"), "tokenizer": _TOKENIZER},
            _model_outputs(),
            distributed=True,
            chat_alias="base",
            job=JobSize(**_TRAIN_JOB, hours=24),
        ),
        Stage(
            "base_eval",
            ("base_eval",),
            {"model": Input("pretrain", "model"), "tokenizer": _TOKENIZER, "data": Input("data", "manifest")},
            {"result": "eval.json"},
            result="result",
            job=JobSize(cpus=8, mem_gb=32, hours=4),
        ),
        Stage(
            "midtrain",
            ("midtrain",),
            {"model": Input("pretrain", "model"), "tokenizer": _TOKENIZER},
            _model_outputs(),
            distributed=True,
            chat_model=True,
            job=JobSize(**_TRAIN_JOB, hours=8),
        ),
        Stage(
            "sft",
            ("sft",),
            {"model": Input("midtrain", "model"), "tokenizer": _TOKENIZER},
            _model_outputs(),
            distributed=True,
            chat_model=True,
            job=JobSize(**_TRAIN_JOB, hours=4),
        ),
        Stage(
            "rl",
            ("rl",),
            {"model": Input("sft", "model"), "tokenizer": _TOKENIZER},
            _model_outputs(),
            distributed=True,
            chat_model=True,
            job=JobSize(**_TRAIN_JOB, hours=8),
        ),
        Stage(
            "eval",
            ("eval",),
            {"model": Input(EACH_CHAT_MODEL, "model"), "tokenizer": _TOKENIZER},
            {"result": "eval.json"},
            result="result",
            job=JobSize(cpus=8, mem_gb=32, hours=4),
        ),
    ]
}

# Stages that produce a model worth chatting with, most trained first (chat's default order).
CHAT_STAGES = [s for s in reversed(STAGES.values()) if s.chat_label]
# Chat models the eval stage scores.
EVALUATED = [s.name for s in STAGES.values() if s.chat_model]


def stage(name: str) -> Stage:
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"there is no stage named {name!r}; stages: {', '.join(STAGES)}") from None


def instance_name(stage_name: str, model_stage: str | None = None) -> str:
    """A run's name for one stage instance: the stage, or eval/<model stage> for per-model stages."""
    return f"{stage_name}/{model_stage}" if model_stage else stage_name


def run_order() -> list[str]:
    """Every stage instance of a run in DAG order (each eval right after the model it scores)."""
    names: list[str] = []
    per_model = [s.name for s in STAGES.values() if any(i.stage == EACH_CHAT_MODEL for i in s.inputs.values())]
    for s in STAGES.values():
        if s.name in per_model:
            continue
        names.append(s.name)
        if s.name in EVALUATED:
            names += [instance_name(p, s.name) for p in per_model]
    return names
