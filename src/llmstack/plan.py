"""Plan runs: (preset, overrides, sweep) -> runs whose stages are addressed by their settings.

    plans = plan_runs("tiny", overrides="model.depth=6", sweep="sft.init_lr_frac=0.02,0.05")

A stage's address is `artifacts/<stage>/<key>`, where key hashes the stage's config slice (its
sections from the stage table, minus execution and plan settings) plus the keys of the stages it
reads; so a changed setting reruns exactly the stages it affects, and a sweep over model.depth
shares one data and one tokenizer folder. Task lists and local paths are checked here, before any
job starts.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from llmstack.config import (
    SOURCES,
    ChatTrainConfig,
    LoopConfig,
    compose_config,
    field_roles,
    parse_sweep,
    section_class,
    sections_of,
)
from llmstack.loggers import TRACKING, check_installed
from llmstack.pipeline import EACH_CHAT_MODEL, EVALUATED, STAGES, instance_name


def _split(node: Any, roles: Any) -> tuple[Any, Any]:
    """(what determines the result, the execution settings) of a resolved config node."""
    if not isinstance(node, dict) or not isinstance(roles, dict):
        return node, None
    keep, exe = {}, {}
    for k, v in sorted(node.items()):
        role = roles.get(k)
        if role == "execution":
            exe[k] = v
        elif role != "plan":
            keep[k], sub = _split(v, role)
            if sub:
                exe[k] = sub
    return keep, exe


def _section(cfg: DictConfig, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    node = OmegaConf.to_container(cfg[name], resolve=True)
    if name == "data":  # only the chosen source's settings matter
        node = {k: v for k, v in node.items() if k not in SOURCES or k == node["source"]}
    return _split(node, field_roles(section_class(name)))


def stage_slice(cfg: DictConfig, stage: str) -> dict[str, Any]:
    """The part of the resolved config that determines `stage`'s result (sorted, builtins only)."""
    return {s: _section(cfg, s)[0] for s in STAGES[stage].sections}


def execution_settings(cfg: DictConfig, stage: str, run: str = "") -> dict[str, Any]:
    """The execution-only settings of a stage by section (device, processes...), passed beside the slice;
    plus, for a trained stage when loggers are asked for, `tracking`: the loggers and the run they report under."""
    exe: dict[str, Any] = {s: e for s in STAGES[stage].sections if (e := _section(cfg, s)[1])}
    if cfg.logger and issubclass(section_class(STAGES[stage].sections[-1]), LoopConfig):
        exe[TRACKING] = {"loggers": list(cfg.logger), "run": run}
    return exe


def digest(obj: Any, n: int = 10) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:n]


@dataclass
class StageSpec:
    """One stage instance of one run: where it lives and what determines it."""

    stage: str
    key: str
    config: dict[str, Any]  # the slice, plus `inputs`: {upstream stage: key}
    execution: dict[str, Any]

    @property
    def dir(self) -> str:
        return f"artifacts/{self.stage}/{self.key}"

    def config_json(self) -> str:
        return json.dumps(self.config, sort_keys=True)

    def input_files(self) -> dict[str, str]:
        """{input name: path} of the declared upstream outputs this instance reads."""
        out = {}
        for name, source in STAGES[self.stage].inputs.items():
            up = self.config["model_stage"] if source.stage == EACH_CHAT_MODEL else source.stage
            out[name] = f"artifacts/{up}/{self.config['inputs'][name]}/{STAGES[up].declared[source.output]}"
        return out


@dataclass
class RunPlan:
    name: str
    preset: str
    overrides: list[str]
    cfg: DictConfig
    stages: dict[str, StageSpec]  # by instance name: "pretrain", "eval/sft"

    def meta_files(self) -> dict[str, str]:
        """{instance name with '_' for '/': its meta.json}: what the report reads, one per stage."""
        return {
            name.replace("/", "_"): f"{s.dir}/{STAGES[s.stage].declared['meta']}" for name, s in self.stages.items()
        }

    def manifest(self) -> dict[str, Any]:
        # Only what identifies the results: a chat.port override must not rerun anything.
        return {"run": self.name, "stages": {name: spec.dir for name, spec in sorted(self.stages.items())}}


def plan_stages(cfg: DictConfig, run: str = "") -> dict[str, StageSpec]:
    """Every stage instance of one config (of the run named `run`), keyed in DAG order (the table's order)."""
    specs: dict[str, StageSpec] = {}
    for st in STAGES.values():
        per_model = [i for i in st.inputs.values() if i.stage == EACH_CHAT_MODEL]
        for model_stage in EVALUATED if per_model else [None]:
            body = stage_slice(cfg, st.name)
            body["inputs"] = {
                name: specs[model_stage if i.stage == EACH_CHAT_MODEL else i.stage].key for name, i in st.inputs.items()
            }
            if model_stage:
                body["model_stage"] = model_stage
            key = digest({"stage": st.name, **body})
            exe = execution_settings(cfg, st.name, run)
            specs[instance_name(st.name, model_stage)] = StageSpec(st.name, key, body, exe)
    return specs


def check_task_lists(cfg: DictConfig) -> None:
    """Fail at plan time, before any job, on a mixture or eval list naming an unknown task or
    option, or a local `path` that does not exist (hub downloads are checked by the stage); and
    base_eval's CORE tasks against the eval bundle (tasks.core.check_core_config)."""
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

    for section in sections_of(ChatTrainConfig):
        for key in ("mixture", "val_mixture", "quick_eval"):
            for i, entry in enumerate(OmegaConf.to_container(cfg[section][key], resolve=True)):
                entry = dict(entry)
                check(f"{section}.{key}[{i}]", str(entry.pop("task", "")), entry)
    from llmstack.tasks.core import check_core_config

    # CORE: labels and few-shot counts against the bundle, or the bundle must be downloadable.
    check_core_config(list(cfg.base_eval.core_tasks), cfg.base_eval.core_data_dir)
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
        check_installed(list(cfg.logger))
        name = run if len(points) == 1 and not point else "-".join([run, *point])
        plans.append(RunPlan(name, preset, base + point, cfg, plan_stages(cfg, name)))
    names = [p.name for p in plans]
    if len(set(names)) != len(names):
        raise ValueError(f"sweep produced duplicate run names: {names}")
    return plans
