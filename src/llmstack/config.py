"""The typed config schema, Hydra composition, the depth dial, and stage addresses.

    llmstack config model.depth=20          # print the resolved config with derived numbers

Values live in `configs/` (YAML, one group per stage); this module holds the *schema* (types,
documentation, `MISSING` where YAML must supply a value) so a typo or a bad type fails when the
config is composed, before any job runs. `plan_runs` turns (preset, overrides, sweep) into runs
whose stages are addressed by `stage_key`: a hash of the stage's own config slice plus the keys of
the stages it reads, so a changed setting reruns exactly the stages it affects.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import MISSING, DictConfig, OmegaConf

from llmstack.dims import dims_from_depth

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

# ---------------------------------------------------------------------------------------- schema


@dataclass
class EmbeddedSource:
    seed: int = 0  # world and document stream seed
    n_entities: int = 48  # fictional entities in the toy world
    train_bytes: int = 24_000_000  # characters of training text to generate
    val_bytes: int = 500_000
    shard_bytes: int = 8_000_000  # target size of one parquet shard


@dataclass
class HubSource:
    repo_id: str = "karpathy/fineweb-edu-100b-shuffle"  # or karpathy/climbmix-400b-shuffle
    revision: str = "main"
    n_shards: int = 8  # training shards shard_00000 ... shard_{n-1}
    val_shard: int = 1822  # index of the shard kept for validation (the dataset's last)
    workers: int = 8  # parallel downloads


@dataclass
class LocalSource:
    paths: list[str] = field(default_factory=list)  # globs of parquet / jsonl / txt files
    text_column: str = "text"
    val_fraction: float = 0.01  # documents held out for validation


@dataclass
class DataConfig:
    source: str = MISSING  # embedded | hf | local
    embedded: EmbeddedSource = field(default_factory=EmbeddedSource)
    hf: HubSource = field(default_factory=HubSource)
    local: LocalSource = field(default_factory=LocalSource)
    rows_per_group: int = 1024  # parquet row-group size (the loader's unit of streaming)

    def __post_init__(self) -> None:
        if self.source not in (MISSING, "embedded", "hf", "local"):
            raise ValueError(f"data.source must be embedded, hf or local, got {self.source!r}")


@dataclass
class TokenizerConfig:
    vocab_size: int = MISSING
    max_chars: int = MISSING  # characters of training text the BPE trainer sees
    threads: int = 2  # sentencepiece trainer threads (does not change the result)


@dataclass
class ModelConfig:
    depth: int = MISSING  # the one dial: layers; width, heads, batch and horizon follow
    aspect_ratio: int = MISSING  # width = depth * aspect_ratio, rounded up to head_dim
    head_dim: int = MISSING
    kv_ratio: int = MISSING  # query heads per key/value head (1 = MHA, n_head = MQA)
    seq_len: int = MISSING
    softcap: float = MISSING
    vocab_size: int = MISSING  # interpolated from tokenizer.vocab_size
    # derived from depth unless set
    n_embd: int | None = None
    n_head: int | None = None
    n_kv_head: int | None = None


@dataclass
class TrainConfig:
    """Settings of the one training loop, shared by pretrain, midtrain and sft."""

    total_batch_tokens: int | None = None  # tokens per optimizer step; derived when None
    device_batch_size: int | None = None  # sequences per forward; None = largest that fits
    max_steps: int | None = None  # optimizer steps; derived from tokens_params_ratio when None
    tokens_params_ratio: float = 20.0  # Chinchilla-style horizon: tokens = ratio * scaling params
    matrix_lr: float = 0.02  # Muon
    embedding_lr: float = 0.2  # AdamW, scaled by (n_embd/768)^-0.5
    unembedding_lr: float = 0.004  # AdamW, scaled likewise
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    warmdown_ratio: float = 0.2
    final_lr_frac: float = 0.0
    init_lr_frac: float = 1.0  # chat stages start from a fraction of the pretraining LRs
    grad_clip: float = 1.0  # 0 disables
    precision: str = "auto"  # auto | bf16 | fp32
    seed: int = 1337
    eval_every: int = 100  # steps between validation passes
    eval_tokens: int = 65536  # tokens per validation pass
    sample_every: int = 0  # steps between samples from fixed prompts (0: only at the end)
    ckpt_every: int = 100  # steps between step checkpoints
    keep_ckpts: int = 2
    # execution only: they do not change the math, so they stay out of the stage key
    cpu_procs: int = 1  # gloo processes when no GPU is present
    compile: bool = False
    device: str = "auto"


@dataclass
class ChatTrainConfig(TrainConfig):
    mixture: list[Any] = field(default_factory=list)  # [{task, weight|epochs, ...task kwargs}]
    val_mixture: list[Any] = field(default_factory=list)
    num_epochs: float = 1.0
    quick_eval: list[Any] = field(default_factory=list)  # [{task, ...kwargs}] scored after training
    quick_eval_examples: int = 200  # examples per quick-eval task


@dataclass
class RLConfig:
    task: str = MISSING  # reward task: toy_arithmetic | gsm8k
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    num_steps: int = MISSING
    prompts_per_step: int = MISSING
    samples_per_prompt: int = MISSING  # GRPO group size
    max_new_tokens: int = MISSING
    temperature: float = 1.0
    top_k: int = 50
    lr_frac: float = MISSING  # fraction of the pretraining LRs
    eval_every: int = 20
    eval_examples: int = 64
    ckpt_every: int = 20
    keep_ckpts: int = 2
    seed: int = 1337
    precision: str = "auto"
    cpu_procs: int = 1
    device: str = "auto"


@dataclass
class BaseEvalConfig:
    core_tasks: list[str] = field(default_factory=list)  # CORE task names; [] = toy world only
    core_data_dir: str = ""  # local llm-foundry jsonl folder ('' = the hub when online)
    max_per_task: int = 500
    toy_questions: int = 200
    bpb_tokens: int = 262144
    device: str = "auto"


@dataclass
class EvalConfig:
    tasks: list[str] = field(default_factory=list)
    max_per_task: int = 200
    task_kwargs: dict[str, Any] = field(default_factory=dict)  # per-task paths etc.
    max_new_tokens: int = 256
    temperature: float = 0.0
    device: str = "auto"


@dataclass
class ReportConfig:
    gpu_hour_price: float = 3.0  # USD per GPU-hour, for the cost column
    cpu_hour_price: float = 0.05


@dataclass
class ChatConfig:
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False  # never a public link unless asked
    stage: str = "rl"  # which model the chat rule serves
    temperature: float = 0.8
    top_k: int = 50
    max_new_tokens: int = 512
    name: str = "llmstack"  # identity the chat stages teach
    maker: str = "the llmstack authors"


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: TrainConfig = field(default_factory=TrainConfig)
    base_eval: BaseEvalConfig = field(default_factory=BaseEvalConfig)
    midtrain: ChatTrainConfig = field(default_factory=ChatTrainConfig)
    sft: ChatTrainConfig = field(default_factory=ChatTrainConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)


ConfigStore.instance().store(name="llmstack_schema", node=Config)

# -------------------------------------------------------------------------------- composition


def compose_config(preset: str = "tiny", overrides: list[str] | str = ()) -> DictConfig:
    """The resolved config for a preset plus Hydra overrides (a list or a space-separated string).

    Raises hydra's own errors (unknown key, bad type) before any work is done."""
    if isinstance(overrides, str):
        overrides = shlex.split(overrides)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"preset={preset}", *overrides])
    derive(cfg)
    return cfg


def one_line(err: BaseException) -> str:
    """Hydra's error as one line: its message plus the reason on the next line, if any."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    if err.__cause__ is not None and str(err.__cause__).strip():
        lines = lines[:1] + [str(err.__cause__).strip().splitlines()[0]]
    return ": ".join(lines[:2]) if lines else type(err).__name__


def parse_sweep(sweep: str) -> list[list[str]]:
    """Hydra sweep syntax -> one override list per point (cartesian product over keys).

    `"model.depth=4,6 sft.lr=1e-4,2e-4"` -> 4 points; `range(4,10,2)` works too."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not sweep.strip():
        return [[]]
    parsed = OverridesParser.create().parse_overrides(shlex.split(sweep))
    points: list[list[str]] = [[]]
    for ov in parsed:
        values = (
            [ov.get_value_element_as_str()]
            if not ov.is_sweep_override()
            else [_value_str(v) for v in ov.sweep_string_iterator()]
        )
        points = [p + [f"{ov.get_key_element()}={v}"] for p in points for v in values]
    return points


def _value_str(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


# ----------------------------------------------------------------------------------- depth dial


def model_dims(m: DictConfig | dict) -> dict[str, int]:
    """Width and heads from depth (llmstack.dims), unless n_embd / n_head / n_kv_head are set."""
    d = dims_from_depth(m["depth"], m["aspect_ratio"], m["head_dim"], m["kv_ratio"])
    for k in ("n_embd", "n_head", "n_kv_head"):
        d[k] = m.get(k) or d[k]
    if d["n_embd"] % d["n_head"] or d["n_head"] % d["n_kv_head"]:
        raise ValueError(f"model: n_embd={d['n_embd']}, n_head={d['n_head']}, n_kv_head={d['n_kv_head']} do not divide")
    return d


def param_counts(m: DictConfig | dict) -> dict[str, int]:
    """Parameter counts of the GPT in model.py, computed without building it."""
    d = model_dims(m)
    D, L, hd = d["n_embd"], d["n_layer"], d["n_embd"] // d["n_head"]
    attn = D * D * 2 + 2 * D * d["n_kv_head"] * hd  # q, out + k, v
    mlp = 2 * 4 * D * D
    embed = m["vocab_size"] * D
    matrices = L * (attn + mlp)
    return {"total": matrices + 2 * embed, "scaling": matrices + embed}  # scaling: + lm_head


def derive(cfg: DictConfig) -> None:
    """Fill the numbers the depth dial determines (in place), printing-friendly.

    1. width/heads from depth (model_dims);  2. horizon: tokens = ratio * scaling params;
    3. batch: a power of two near horizon/20k steps (nanochat d20: 524,288 tokens), at least one
       sequence;  4. steps = tokens / batch unless max_steps is set."""
    m = cfg.model
    for k, v in model_dims(m).items():
        if k != "n_layer":
            m[k] = v
    p = cfg.pretrain
    scaling = param_counts(m)["scaling"]
    target = p.tokens_params_ratio * scaling
    if p.total_batch_tokens is None:
        batch = 2 ** round(math.log2(max(1.0, target / 20_000)))
        p.total_batch_tokens = int(max(m.seq_len, min(batch, 2**21)))
    if p.total_batch_tokens % m.seq_len:
        raise ValueError(
            f"pretrain.total_batch_tokens={p.total_batch_tokens} is not a multiple of model.seq_len={m.seq_len}"
        )
    if p.max_steps is None:
        p.max_steps = max(1, round(target / p.total_batch_tokens))
    for stage in ("midtrain", "sft"):
        c = cfg[stage]
        if c.total_batch_tokens is None:
            c.total_batch_tokens = p.total_batch_tokens
        if c.total_batch_tokens % m.seq_len:
            raise ValueError(f"{stage}.total_batch_tokens must be a multiple of model.seq_len")


# ------------------------------------------------------------------------------ stage addresses

# Which config sections each stage reads, and which stages' outputs it consumes.
SECTIONS = {
    "data": ["data"],
    "tokenizer": ["tokenizer"],
    "pretrain": ["model", "pretrain"],
    "base_eval": ["base_eval"],
    "midtrain": ["midtrain"],
    "sft": ["sft"],
    "rl": ["rl"],
    "eval": ["eval"],
}
UPSTREAM = {
    "data": [],
    "tokenizer": ["data"],
    "pretrain": ["data", "tokenizer"],
    "base_eval": ["data", "tokenizer", "pretrain"],
    "midtrain": ["tokenizer", "pretrain"],
    "sft": ["tokenizer", "midtrain"],
    "rl": ["tokenizer", "sft"],
}
TRAINED = ["pretrain", "midtrain", "sft", "rl"]
CHAT_MODELS = ["midtrain", "sft", "rl"]  # evaluated by the eval stage
# Settings that decide where or how fast a stage runs, never its result: kept out of the key.
EXECUTION_ONLY = {"device_batch_size", "cpu_procs", "compile", "device", "threads", "workers"}


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in sorted(node.items()) if k not in EXECUTION_ONLY}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def stage_slice(cfg: DictConfig, stage: str) -> dict[str, Any]:
    """The part of the resolved config that determines `stage`'s result (sorted, builtins only)."""
    out = {s: OmegaConf.to_container(cfg[s], resolve=True) for s in SECTIONS[stage]}
    if stage == "data":  # only the chosen source's settings matter
        d = out["data"]
        out["data"] = {k: v for k, v in d.items() if k not in ("embedded", "hf", "local") or k == d["source"]}
    return _strip(out)


def execution_settings(cfg: DictConfig, stage: str) -> dict[str, Any]:
    """The execution-only settings of a stage (device, processes...), passed beside the slice."""
    out: dict[str, Any] = {}
    for s in SECTIONS.get(stage, []):
        node = OmegaConf.to_container(cfg[s], resolve=True)
        out.update({k: v for k, v in node.items() if k in EXECUTION_ONLY})
    return out


def digest(obj: Any, n: int = 10) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:n]


@dataclass
class StageSpec:
    """One stage of one run: where it lives and what determines it."""

    stage: str
    key: str
    config: dict[str, Any]  # the slice, plus `inputs`: {upstream stage: key}
    execution: dict[str, Any]

    @property
    def dir(self) -> str:
        return f"artifacts/{self.stage}/{self.key}"

    def config_json(self) -> str:
        return json.dumps(self.config, sort_keys=True)


@dataclass
class RunPlan:
    name: str
    preset: str
    overrides: list[str]
    cfg: DictConfig
    stages: dict[str, StageSpec]  # "eval/sft" for the eval of a chat model

    def result_files(self) -> dict[str, str]:
        """{name: the declared result file} of each stage of the run (what the report reads)."""
        main = {
            "data": "manifest.json",
            "tokenizer": "tokenizer.json",
            "base_eval": "eval.json",
            "eval": "eval.json",
        }
        return {
            name.replace("/", "_"): f"{s.dir}/{main.get(s.stage, 'metrics.json')}" for name, s in self.stages.items()
        }

    def manifest(self) -> dict[str, Any]:
        # Only what identifies the results: a chat.port override must not rerun anything.
        return {"run": self.name, "stages": {name: spec.dir for name, spec in sorted(self.stages.items())}}


def plan_stages(cfg: DictConfig) -> dict[str, StageSpec]:
    specs: dict[str, StageSpec] = {}
    for stage in UPSTREAM:
        body = stage_slice(cfg, stage)
        body["inputs"] = {u: specs[u].key for u in UPSTREAM[stage]}
        specs[stage] = StageSpec(stage, digest({"stage": stage, **body}), body, execution_settings(cfg, stage))
    for model_stage in CHAT_MODELS:
        body = stage_slice(cfg, "eval")
        body["inputs"] = {"tokenizer": specs["tokenizer"].key, "model": specs[model_stage].key}
        body["model_stage"] = model_stage
        specs[f"eval/{model_stage}"] = StageSpec(
            "eval", digest({"stage": "eval", **body}), body, execution_settings(cfg, "eval")
        )
    return specs


def check_task_lists(cfg: DictConfig) -> None:
    """Fail at plan time, before any job, on a mixture or eval list naming an unknown task or
    option, or a local `path` that does not exist (hub downloads are checked by the stage)."""
    from llmstack.tasks import task_class, task_options

    def check(where: str, name: str, kwargs: dict[str, Any]) -> None:
        try:
            task_class(name)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        unknown = sorted(set(kwargs) - task_options(name) - {"epochs", "weight", "size", "label"})
        if unknown:
            raise ValueError(f"{where}: task {name!r} has no option(s) {unknown}")
        path = kwargs.get("path")
        if path and not Path(path).expanduser().exists():
            raise ValueError(f"{where}: task {name!r} path {path!r} does not exist")

    for stage in ("midtrain", "sft"):
        for key in ("mixture", "val_mixture", "quick_eval"):
            for i, entry in enumerate(OmegaConf.to_container(cfg[stage][key], resolve=True)):
                entry = dict(entry)
                check(f"{stage}.{key}[{i}]", str(entry.pop("task", "")), entry)
    be = cfg.base_eval
    if be.core_tasks and not (be.core_data_dir or os.environ.get("LLMSTACK_CORE_HUB_REPO")):
        raise ValueError(
            "base_eval.core_tasks needs base_eval.core_data_dir (llm-foundry eval data on disk) "
            "or LLMSTACK_CORE_HUB_REPO; or set base_eval.core_tasks=[]"
        )
    if be.core_data_dir and not Path(be.core_data_dir).expanduser().is_dir():
        raise ValueError(f"base_eval.core_data_dir {be.core_data_dir!r} is not a folder")
    check("rl.task", cfg.rl.task, OmegaConf.to_container(cfg.rl.task_kwargs, resolve=True))
    kwargs = OmegaConf.to_container(cfg.eval.task_kwargs, resolve=True)
    for name in cfg.eval.tasks:
        check("eval.tasks", name, kwargs.get(name, {}))


def plan_runs(preset: str = "tiny", run: str | None = None, overrides: str = "", sweep: str = "") -> list[RunPlan]:
    """Every run the workflow should produce: one, or one per sweep point."""
    base = shlex.split(overrides)
    run = run or preset
    points = parse_sweep(sweep)
    plans = []
    for point in points:
        cfg = compose_config(preset, base + point)
        check_task_lists(cfg)
        name = run if len(points) == 1 and not point else "-".join([run, *point])
        plans.append(RunPlan(name, preset, base + point, cfg, plan_stages(cfg)))
    names = [p.name for p in plans]
    if len(set(names)) != len(names):
        raise ValueError(f"sweep produced duplicate run names: {names}")
    return plans
