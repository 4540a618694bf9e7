"""What the trained stages' entry points share around the harness (llmstack.harness).

d = start(ctx)                                        # process group, device
spec = train_spec(ctx, model, steps, base_lrs, ...)    # the stage's section -> TrainSpec
return finish(ctx, d, Trainer(spec, recipe, d).fit())  # metrics.json, meta.json fields
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmstack import distributed
from llmstack.artifacts import write_json
from llmstack.harness import BASE_LRS, TrainSpec
from llmstack.loggers import TRACKING, Tracking
from llmstack.model import GPT
from llmstack.stages.common import StageContext


def start(ctx: StageContext) -> distributed.Dist:
    """Join the process group; meta.json records which node each rank ran on."""
    d = distributed.init(ctx.cfg.device)
    ctx.meta["ranks"] = distributed.placement()
    if d.world_size > 1 and d.is_main:
        ctx.print(f"ranks on: {', '.join(ctx.meta['ranks'])}")
    return d


def recorded_lrs(meta: dict[str, Any], path: Path) -> dict[str, float]:
    """The base learning rates an input model was trained from: later stages scale these."""
    lrs = meta.get("base_lrs")
    if not isinstance(lrs, dict) or set(BASE_LRS) - set(lrs):
        raise ValueError(f"{path} records no base learning rates (made by an older llmstack): rerun its stage")
    return {k: float(lrs[k]) for k in BASE_LRS}


def tracking(ctx: StageContext) -> Tracking | None:
    """The loggers the planner asked for (execution JSON `tracking`), or None: not part of the key."""
    asked = ctx.execution.get(TRACKING, {})
    if not asked.get("loggers"):
        return None
    return Tracking(list(asked["loggers"]), str(asked.get("run", "")), ctx.name, ctx.dir.name, ctx.dir, ctx.slice)


def train_spec(
    ctx: StageContext, model: GPT, steps: int, base_lrs: dict[str, float], lr_frac: float = 1.0, **extra: Any
) -> TrainSpec:
    """A TrainSpec from the stage's own section; weight decay and clipping where the section has them."""
    cfg = ctx.cfg
    return TrainSpec(
        stage=ctx.name,
        out_dir=ctx.dir,
        loop=cfg,
        model=model,
        total_steps=steps,
        base_lrs=base_lrs,
        lr_frac=lr_frac,
        fingerprint=ctx.fingerprint(),
        meta={"key": ctx.dir.name, "chat": ctx.stage.chat_model, **extra.pop("meta", {})},
        tracking=tracking(ctx),
        **extra,
    )


def finish(ctx: StageContext, d: distributed.Dist, metrics: dict[str, Any] | None) -> dict[str, Any]:
    """Rank 0 writes metrics.json; returns the scalar metrics for meta.json. Leaves the process group."""
    summary: dict[str, Any] = {}
    if d.is_main and metrics is not None:
        write_json(ctx.dir / ctx.stage.declared["metrics"], metrics)
        ctx.meta.update(device=metrics["device"], dtype=metrics["dtype"])
        summary = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    distributed.shutdown()
    return summary
