"""Eval stage: score one chat model (midtrain, sft or rl) on the configured tasks; ChatCORE.

    python -m llmstack.launch eval artifacts/eval/<key> --config JSON \
        --input model=artifacts/sft/<key>/model.pt --input tokenizer=artifacts/tokenizer/<key>/tokenizer.model

Writes eval.json: {"model_stage", "tasks": {name: {accuracy, n, baseline, centered, examples?}}, "chatcore"}.
"""

from __future__ import annotations

from typing import Any

from llmstack.artifacts import write_json
from llmstack.checkpoint import load_model
from llmstack.config import EvalConfig
from llmstack.device import pick_device
from llmstack.evaluate.chat_eval import chatcore, evaluate_tasks
from llmstack.stages.common import StageContext, stage_main
from llmstack.tokenizer import Tokenizer


def run(ctx: StageContext) -> dict[str, Any]:
    cfg: EvalConfig = ctx.cfg
    device = pick_device(cfg.device)
    model, meta = load_model(ctx.inputs["model"], device)
    tok = Tokenizer.load(ctx.inputs["tokenizer"])
    tasks = {name: cfg.task_kwargs.get(name, {}) for name in cfg.tasks}
    results = evaluate_tasks(model, tok, tasks, cfg.max_per_task, cfg.max_new_tokens, cfg.temperature)
    model_stage = ctx.slice["model_stage"]
    out = {"model_stage": model_stage, "model_meta": meta, "tasks": results, "chatcore": chatcore(results)}
    write_json(ctx.dir / ctx.stage.declared["result"], out)
    for name, r in results.items():
        ctx.print(f"{model_stage:8s} {name:16s} {r['accuracy']:.3f} (n={r['n']})")
    ctx.print(f"ChatCORE {out['chatcore']:.4f}")
    ctx.meta["device"] = f"1x{device.type}"
    return {"chatcore": out["chatcore"], **{f"eval/{name}": r["accuracy"] for name, r in results.items()}}


if __name__ == "__main__":
    stage_main("eval", run)
