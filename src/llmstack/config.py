"""The typed config schema, Hydra composition, the depth dial, and typed stage sections.

    llmstack config model.depth=20          # print the resolved config with derived numbers

Values live in `configs/` (YAML, one group per section); this module holds the *schema* (types,
documentation, allowed values, `MISSING` where YAML must supply a value) so a typo, a bad type or
a value out of range fails when the config is composed, before any job runs. `derive` fills what
the depth dial determines. A stage entry rebuilds its sections as these dataclasses
(`build_section`) and passes them on, so code reads `cfg.matrix_lr`, never a dict with a default
of its own. Planning runs and stage addresses from a composed config is llmstack.plan's job.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, field, fields, is_dataclass
from functools import partial
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import MISSING, DictConfig, OmegaConf

from llmstack.config_checks import (
    DEVICE,
    at_least,
    between,
    check_values,
    fraction,
    head_split,
    multiple_of,
    not_below,
    one_line,  # noqa: F401  (re-exported: the CLI and the Snakefile print config errors with it)
    one_of,
    positive,
    proper_fraction,
    setting,
    sum_at_most_one,
    unit_interval,
    vocab,
)
from llmstack.dims import dims_from_depth
from llmstack.loggers import logger_names
from llmstack.pipeline import CHAT_STAGES

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

# ---------------------------------------------------------------------------------------- schema
# Two kinds of fields stay out of a stage's key (llmstack.plan.stage_slice):
# - execution settings decide where or how fast a stage runs, never its numbers;
# - plan settings are consumed by `derive` here: their effect is in the fields they derive.
# Stage entries rebuild sections without plan settings, so their type is optional. Value
# constraints (llmstack.config_checks) sit beside each field and are checked at composition.
execution = partial(setting, role="execution")  # execution(default, *checks)
plan = partial(setting, role="plan")


@dataclass
class EmbeddedSource:
    seed: int = 0  # world and document stream seed
    n_entities: int = setting(48, between(16, 4000))  # fictional entities in the toy world
    train_bytes: int = setting(24_000_000, at_least(1))  # characters of training text to generate
    val_bytes: int = setting(500_000, at_least(1))
    shard_bytes: int = setting(8_000_000, at_least(1))  # target size of one parquet shard


@dataclass
class HubSource:
    repo_id: str = "karpathy/fineweb-edu-100b-shuffle"  # or karpathy/climbmix-400b-shuffle
    revision: str = "main"
    n_shards: int = setting(8, at_least(1))  # training shards shard_00000 ... shard_{n-1}
    val_shard: int = setting(1822, not_below("n_shards"))  # the shard kept for validation (the dataset's last)
    workers: int = execution(8, at_least(1))  # parallel downloads


@dataclass
class LocalSource:
    paths: list[str] = field(default_factory=list)  # globs of parquet / jsonl / txt files
    text_column: str = "text"
    val_fraction: float = setting(0.01, proper_fraction())  # documents held out for validation
    val_paths: list[str] = field(default_factory=list)  # validation files/globs; empty: hold out val_fraction


SOURCES = ("embedded", "hf", "local")  # data.source values, each a DataConfig field of its own


@dataclass
class DataConfig:
    source: str = setting(MISSING, one_of(*SOURCES))
    embedded: EmbeddedSource = field(default_factory=EmbeddedSource)
    hf: HubSource = field(default_factory=HubSource)
    local: LocalSource = field(default_factory=LocalSource)
    rows_per_group: int = setting(1024, at_least(1))  # parquet row-group size (the loader's unit of streaming)


@dataclass
class TokenizerConfig:
    vocab_size: int = setting(MISSING, vocab())
    max_chars: int = setting(MISSING, at_least(1))  # characters of training text the BPE trainer sees
    threads: int = execution(2, at_least(1))  # sentencepiece trainer threads (does not change the result)


@dataclass
class ModelConfig:
    depth: int = setting(MISSING, at_least(1))  # the one dial: layers; width, heads, batch and horizon follow
    aspect_ratio: int | None = plan(None, at_least(1))  # width = depth * aspect_ratio, rounded up to head_dim
    head_dim: int | None = plan(None, at_least(2))
    kv_ratio: int | None = plan(None, at_least(1))  # query heads per key/value head (1 = MHA, n_head = MQA)
    seq_len: int = setting(MISSING, at_least(1))  # the model itself needs no multiple of anything
    softcap: float = setting(MISSING, positive())
    vocab_size: int = setting(MISSING, not_below("tokenizer.vocab_size"))  # interpolated from tokenizer.vocab_size
    # derived from depth unless set
    n_embd: int | None = setting(None, at_least(1))
    n_head: int | None = setting(None, at_least(1), head_split("n_embd"))
    n_kv_head: int | None = setting(None, at_least(1))


@dataclass
class LoopConfig:
    """What the training harness (llmstack.harness) reads: every trained stage has these."""

    seed: int = 1337
    precision: str = setting("auto", one_of("auto", "bf16", "fp32"))  # llmstack.device's choices
    eval_every: int = setting(100, at_least(0))  # steps between evaluations (0: only before training)
    ckpt_every: int = setting(100, at_least(0))  # steps between step checkpoints (0: none)
    keep_ckpts: int = setting(2, at_least(1))
    # step checkpoints left in ckpt/ once the stage has finished; 0: none (model.pt is the result)
    keep_ckpts_after: int = execution(0, at_least(0))
    device: str = execution("auto", DEVICE)
    cpu_procs: int = execution(1, at_least(1))  # gloo processes when no GPU is present
    nodes: int = execution(1, at_least(1))  # Slurm nodes; > 1: one torchrun agent per node (c10d rendezvous)
    gpus_per_node: int = execution(0, at_least(0))  # GPUs asked of Slurm per node (gres); 0: none, use visible
    device_batch_size: int | None = execution(None, at_least(1))  # sequences per forward; None = pick


@dataclass
class TrainConfig(LoopConfig):
    """Next-token training (pretrain, midtrain, sft): llmstack.train's step on the harness."""

    # tokens per optimizer step (whole sequences); derived when None
    total_batch_tokens: int | None = setting(None, at_least(1), multiple_of("model.seq_len"))
    max_steps: int | None = setting(None, at_least(1))  # optimizer steps; pretrain derives it, chat stages count epochs
    weight_decay: float = setting(0.0, at_least(0))
    warmup_ratio: float = setting(0.0, unit_interval(), sum_at_most_one("warmdown_ratio"))
    warmdown_ratio: float = setting(0.2, unit_interval())
    final_lr_frac: float = setting(0.0, unit_interval())
    grad_clip: float = setting(1.0, at_least(0))  # 0 disables
    eval_tokens: int = setting(65536, at_least(1))  # tokens per validation pass
    compile: bool = execution(False)


@dataclass
class PretrainConfig(TrainConfig):
    tokens_params_ratio: float | None = plan(20.0, positive())  # horizon: tokens = ratio * scaling params
    matrix_lr: float = setting(0.02, positive())  # Muon; the chat and RL stages scale the LRs their input model records
    embedding_lr: float = setting(0.2, positive())  # AdamW, scaled by (n_embd/768)^-0.5
    unembedding_lr: float = setting(0.004, positive())  # AdamW, scaled likewise
    sample_every: int = setting(0, at_least(0))  # steps between samples from fixed prompts (0: only at the end)


@dataclass
class ChatTrainConfig(TrainConfig):
    init_lr_frac: float = setting(1.0, fraction())  # fraction of the input model's recorded learning rates
    mixture: list[Any] = field(default_factory=list)  # [{task, weight|epochs, ...task kwargs}]
    val_mixture: list[Any] = field(default_factory=list)
    num_epochs: float = setting(1.0, positive())
    quick_eval: list[Any] = field(default_factory=list)  # [{task, ...kwargs}] scored after training
    quick_eval_examples: int = setting(200, at_least(1))  # examples per quick-eval task


@dataclass
class RLConfig(LoopConfig):
    task: str = MISSING  # reward task: toy_arithmetic | gsm8k
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    num_steps: int = setting(MISSING, at_least(1))
    prompts_per_step: int = setting(MISSING, at_least(1))
    # GRPO group size; a group of one has advantage 0 (reward minus its own mean): nothing to learn
    samples_per_prompt: int = setting(MISSING, at_least(2))
    max_new_tokens: int = setting(MISSING, at_least(1))
    temperature: float = setting(1.0, positive())  # 0 would make a group's samples identical
    top_k: int = setting(50, at_least(0))  # 0: off
    lr_frac: float = setting(MISSING, fraction())  # fraction of the input model's recorded learning rates
    eval_every: int = setting(20, at_least(0))
    eval_examples: int = setting(64, at_least(1))
    ckpt_every: int = setting(20, at_least(0))


@dataclass
class BaseEvalConfig:
    # labels from the eval bundle's core.yaml; [all] = every task; [] = skip CORE (toy world only)
    core_tasks: list[str] = field(default_factory=list)
    # an unzipped eval bundle (the folder holding core.yaml); '' = $LLMSTACK_CACHE/eval_bundle,
    # downloaded and checksum-verified on first use
    core_data_dir: str = ""
    max_per_task: int = setting(500, at_least(0))  # 0: all
    toy_questions: int = setting(200, at_least(1))
    bpb_tokens: int = setting(262144, at_least(1))
    device: str = execution("auto", DEVICE)


@dataclass
class EvalConfig:
    tasks: list[str] = field(default_factory=list)
    max_per_task: int = setting(200, at_least(1))
    task_kwargs: dict[str, Any] = field(default_factory=dict)  # per-task paths etc.
    max_new_tokens: int = setting(256, at_least(1))
    temperature: float = setting(0.0, at_least(0))  # 0: greedy
    device: str = execution("auto", DEVICE)


@dataclass
class ReportConfig:
    gpu_hour_price: float = setting(3.0, at_least(0))  # USD per GPU-hour, for the cost column
    cpu_hour_price: float = setting(0.05, at_least(0))


@dataclass
class ChatConfig:
    host: str = "127.0.0.1"
    port: int = setting(7860, between(1, 65535))
    share: bool = False  # never a public link unless asked
    stage: str = setting("rl", one_of(*(s.name for s in CHAT_STAGES)))  # which model the chat rule serves
    temperature: float = setting(0.8, at_least(0))
    top_k: int = setting(50, at_least(0))  # 0: off
    max_new_tokens: int = setting(512, at_least(1))
    # server limits of the OpenAI API (chat/api.py): 413 over the body size, 400 past depth or count
    max_body_bytes: int = setting(2**20, at_least(1))
    max_messages: int = setting(256, at_least(1))
    max_depth: int = setting(32, at_least(5))  # an OpenAI payload with content parts nests 5 deep
    prompt_chars_per_token: int = setting(16, at_least(1))  # characters kept before tokenizing, per context token
    name: str = "llmstack"  # identity the chat stages teach
    maker: str = "the llmstack authors"


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    base_eval: BaseEvalConfig = field(default_factory=BaseEvalConfig)
    midtrain: ChatTrainConfig = field(default_factory=ChatTrainConfig)
    sft: ChatTrainConfig = field(default_factory=ChatTrainConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    # experiment trackers (llmstack.loggers): an execution setting, carried beside the slices
    logger: list[str] = field(default_factory=list, metadata={"checks": (logger_names(),), "role": "execution"})


ConfigStore.instance().store(name="llmstack_schema", node=Config)

# -------------------------------------------------------------------------------- composition


def compose_config(preset: str = "tiny", overrides: list[str] | str = ()) -> DictConfig:
    """The resolved config for a preset plus Hydra overrides (a list or a space-separated string).

    Raises hydra's own errors (unknown key, bad type) and, for a value out of its schema range,
    a one-line ValueError (llmstack.config_checks) before any work is done."""
    presets = sorted(p.stem for p in (CONFIG_DIR / "preset").glob("*.yaml"))
    if preset not in presets:  # Hydra's own message lists them over several lines
        raise ValueError(f"preset={preset}: must be one of {', '.join(presets)}")
    if isinstance(overrides, str):
        overrides = shlex.split(overrides)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"preset={preset}", *overrides])
    check_values(cfg, Config)  # before derive divides by seq_len and batch sizes
    derive(cfg)
    check_values(cfg, Config)  # what derive filled: batch multiples, head widths
    return cfg


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
    for k in ("aspect_ratio", "head_dim", "kv_ratio"):
        if m[k] is None:
            raise ValueError(f"model.{k} must be set (configs/model/default.yaml has it)")
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


def recipe_batch_tokens(horizon_tokens: float, seq_len: int) -> int:
    """Tokens per optimizer step for a training horizon: a power of two near horizon / 20k steps
    (nanochat d20: 524,288), at least one sequence, at most 2M."""
    batch = 2 ** round(math.log2(max(1.0, horizon_tokens / 20_000)))
    return int(max(seq_len, min(batch, 2**21)))


def derive(cfg: DictConfig) -> None:
    """Fill the numbers the depth dial determines (in place), printing-friendly.

    1. width/heads from depth (model_dims);  2. horizon: tokens = ratio * scaling params;
    3. batch: recipe_batch_tokens;  4. steps = tokens / batch unless max_steps is set."""
    m = cfg.model
    for k, v in model_dims(m).items():
        if k != "n_layer":
            m[k] = v
    p = cfg.pretrain
    scaling = param_counts(m)["scaling"]
    target = p.tokens_params_ratio * scaling
    if p.total_batch_tokens is None:
        p.total_batch_tokens = recipe_batch_tokens(target, m.seq_len)
    if p.max_steps is None:
        p.max_steps = max(1, round(target / p.total_batch_tokens))
    for name in sections_of(ChatTrainConfig):
        if cfg[name].total_batch_tokens is None:
            cfg[name].total_batch_tokens = p.total_batch_tokens


# ------------------------------------------------------------------------------- typed sections


def section_class(name: str) -> type:
    """The schema dataclass of a top-level config section (`pretrain` -> PretrainConfig)."""
    for f in fields(Config):
        if f.name == name:
            return f.default_factory
    raise ValueError(f"there is no config section {name!r}")


def sections_of(cls: type) -> list[str]:
    """Names of the top-level sections whose schema is `cls` (e.g. both chat training stages)."""
    return [f.name for f in fields(Config) if f.default_factory is cls]


def field_roles(cls: type) -> dict[str, Any]:
    """{field: role or nested dict} of a schema dataclass; role is 'execution', 'plan' or None."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        factory = f.default_factory
        if is_dataclass(factory):
            out[f.name] = field_roles(factory)
        else:
            out[f.name] = f.metadata.get("role")
    return out


def build_section(name: str, values: dict[str, Any], execution_values: dict[str, Any] | None = None) -> Any:
    """A section's schema dataclass from its planned slice plus its execution settings.

    Types are checked again (the JSON came through a shell; values were checked at planning), and
    fields the slice leaves out (plan settings, unchosen data sources) take schema defaults."""
    node = OmegaConf.merge(OmegaConf.structured(section_class(name)), values, execution_values or {})
    return OmegaConf.to_object(node)
