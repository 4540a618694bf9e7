"""Experiment trackers: every metrics.jsonl entry of a trained stage, also in W&B and/or TensorBoard.

    logger=[wandb,tensorboard]      # a top-level setting; default [] (neither)

Loggers are execution settings: the planner carries them, with the run name, in the stage's
execution JSON (llmstack.plan.execution_settings), never in its slice, so switching them reruns
nothing. The harness's MetricsLog hands each entry to the open sinks (rank 0 only) and closes them
on finish and on a time-limit stop. A sink mirrors metrics.jsonl: on resume it is replayed the
entries kept from the earlier attempt, so each attempt's W&B run and the TensorBoard folder hold
the stage's whole curve once.

- wandb: one run per stage attempt, group = the llmstack run, name = `<stage>-<key>`, config = the
  stage's slice plus its key; WANDB_MODE, WANDB_PROJECT (default llmstack), WANDB_DIR are honoured.
- tensorboard: event files in `<stage folder>/tb/`, one scalar per metric name.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmstack.config_checks import Check

# logger name -> the module it needs (what `pip install -e ".[name]"` brings)
LOGGERS = {"wandb": "wandb", "tensorboard": "tensorboard"}
TB_DIR = "tb"
TRACKING = "tracking"  # the execution JSON's entry: {"loggers": [...], "run": name}


def logger_names() -> Check:
    """Each entry of the `logger` list names a known logger."""
    choices = ", ".join(LOGGERS)
    return Check(lambda v, _: all(x in LOGGERS for x in v), f"a list of {choices}", ["nope"])


def check_installed(names: list[str]) -> None:
    """Plan time: a logger asked for but not installed fails in one line naming the pip command."""
    for name in names:
        if importlib.util.find_spec(LOGGERS[name]) is None:
            raise ValueError(f'logger={name}: {LOGGERS[name]} is not installed; pip install -e ".[{name}]"')


@dataclass
class Tracking:
    """What a stage's sinks need: built by llmstack.stages.trained from the stage context."""

    loggers: list[str]
    run: str  # the llmstack run that executed the stage (a sweep may share the folder)
    stage: str
    key: str
    folder: Path
    config: dict[str, Any] = field(default_factory=dict)  # the stage's slice


def scalars(entry: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics of a metrics.jsonl entry (text samples and the step itself left out)."""
    return {
        k: float(v)
        for k, v in entry.items()
        if k != "step" and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


class WandbSink:
    def __init__(self, t: Tracking) -> None:
        import wandb

        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or "llmstack",
            group=t.run or None,
            name=f"{t.stage}-{t.key}",
            job_type=t.stage,
            config={"stage": t.stage, "key": t.key, **t.config},
            # console="off": the stage log stays plain stdout (no stream wrapping)
            settings=wandb.Settings(console="off"),
        )

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)  # entries of one step merge into one row

    def close(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class TensorBoardSink:
    def __init__(self, t: Tracking) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = t.folder / TB_DIR
        shutil.rmtree(folder, ignore_errors=True)  # the replayed history rewrites what was there
        self.writer = SummaryWriter(log_dir=str(folder))

    def log(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def close(self, failed: bool) -> None:
        self.writer.close()


SINKS = {"wandb": WandbSink, "tensorboard": TensorBoardSink}


class Sinks:
    """The open loggers of one stage attempt (none when tracking is off or on ranks other than 0)."""

    def __init__(self, tracking: Tracking | None) -> None:
        self.open: list[Any] = []
        for name in tracking.loggers if tracking else []:
            self.open.append(SINKS[name](tracking))

    def log(self, entry: dict[str, Any]) -> None:
        values = scalars(entry)
        if values and "step" in entry:
            for sink in self.open:
                sink.log(int(entry["step"]), values)

    def close(self, failed: bool = False) -> None:
        while self.open:
            self.open.pop().close(failed)
