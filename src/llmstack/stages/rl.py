"""RL stage: GRPO on a task with verifiable rewards, starting from the SFT model (llmstack.rl).

    python -m llmstack.launch rl artifacts/rl/<key> --config JSON \
        --input model=artifacts/sft/<key>/model.pt --input tokenizer=artifacts/tokenizer/<key>/tokenizer.model

Writes model.pt and metrics.json (reward_first, reward_last, eval/accuracy_start, eval/accuracy);
per-step curves go to metrics.jsonl, step checkpoints to ckpt/. Learning rates are `lr_frac` of
the base rates the SFT model records (nanochat's chat_rl scales its base LRs the same way).
"""

from __future__ import annotations

from typing import Any

from llmstack.checkpoint import load_model
from llmstack.config import RLConfig
from llmstack.harness import Trainer
from llmstack.rl import RLRecipe, held_out_task
from llmstack.stages.common import StageContext, stage_main
from llmstack.stages.trained import finish, recorded_lrs, start, train_spec
from llmstack.tasks import make_task
from llmstack.tokenizer import Tokenizer


def run(ctx: StageContext) -> dict[str, Any]:
    d = start(ctx)
    cfg: RLConfig = ctx.cfg
    model, parent = load_model(ctx.inputs["model"], d.device)
    tok = Tokenizer.load(ctx.inputs["tokenizer"])
    if model.config.vocab_size < tok.vocab_size:
        raise ValueError(f"{ctx.inputs['model']} has a {model.config.vocab_size}-token vocabulary, the tokenizer "
                         f"{tok.vocab_size}: they come from different runs")  # fmt: skip
    task = make_task(cfg.task, **cfg.task_kwargs)
    recipe = RLRecipe(cfg, tok, task, held_out_task(cfg.task, cfg.task_kwargs, cfg.eval_examples))
    spec = train_spec(
        ctx,
        model,
        cfg.num_steps,
        base_lrs=recorded_lrs(parent, ctx.inputs["model"]),
        lr_frac=cfg.lr_frac,
        meta={"from": {"stage": parent["stage"], "step": parent["step"]}},
    )
    metrics = Trainer(spec, recipe, d).fit()
    if d.is_main:
        ctx.print(
            f"reward {metrics['reward_first']:.3f} -> {metrics['reward_last']:.3f}, "
            f"eval accuracy {metrics['eval/accuracy_start']:.3f} -> {metrics['eval/accuracy']:.3f}"
        )
    return finish(ctx, d, metrics)


if __name__ == "__main__":
    stage_main("rl", run)
