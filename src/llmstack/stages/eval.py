"""Eval stage: score one chat model (midtrain, sft or rl) on the configured tasks; ChatCORE.

    python -m llmstack.launch eval artifacts/eval/<key> --config JSON \
        --input model=artifacts/sft/<key>/model.pt --input tokenizer=artifacts/tokenizer/<key>/tokenizer.model

Writes eval.json: {"model_stage", "tasks": {name: {accuracy, n, baseline, centered, examples?}}, "chatcore"}.
"""

from __future__ import annotations

from llmstack.checkpoint import load_model
from llmstack.device import pick_device
from llmstack.evaluate.chat_eval import chatcore, evaluate_tasks
from llmstack.stages.common import StageContext, stage_main, write_json
from llmstack.tokenizer import Tokenizer


def run(ctx: StageContext) -> None:
    cfg = ctx.section()
    model, meta = load_model(ctx.inputs["model"], pick_device(ctx.execution.get("device", "auto")))
    tok = Tokenizer.load(ctx.inputs["tokenizer"])
    tasks = {name: cfg["task_kwargs"].get(name, {}) for name in cfg["tasks"]}
    results = evaluate_tasks(model, tok, tasks, cfg["max_per_task"], cfg["max_new_tokens"], cfg["temperature"])
    out = {
        "model_stage": ctx.config["model_stage"],
        "model_meta": meta,
        "tasks": results,
        "chatcore": chatcore(results),
    }
    write_json(ctx.dir / "eval.json", out)
    for name, r in results.items():
        print(f"[eval] {ctx.config['model_stage']:8s} {name:16s} {r['accuracy']:.3f} (n={r['n']})", flush=True)
    print(f"[eval] ChatCORE {out['chatcore']:.4f}", flush=True)


if __name__ == "__main__":
    stage_main("eval", run)
