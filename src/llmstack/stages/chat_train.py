"""The body of midtrain and sft: the harness's next-token step (llmstack.train) on conversations.

midtrain: conversations packed into full rows (special tokens, tool use, multiple choice).
sft:      one conversation per row, padded; loss on assistant tokens only (the chat mask).
Both continue from the previous stage's model.pt at `init_lr_frac` of the base learning rates that
model records, and finish with a quick check on held-out items (`quick_eval`) in metrics.json.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from llmstack.checkpoint import load_model
from llmstack.config import ChatTrainConfig
from llmstack.dataloader import ConversationLoader
from llmstack.distributed import Dist
from llmstack.harness import Trainer
from llmstack.stages.common import StageContext
from llmstack.stages.trained import finish, recorded_lrs, start, train_spec
from llmstack.tasks.mixture import build_mixture
from llmstack.tokenizer import Tokenizer
from llmstack.train import LMRecipe


def count_steps(mixture, tok: Tokenizer, seq_len: int, sequences_per_step: int, packed: bool, epochs: float) -> int:
    """Optimizer steps for `epochs` passes: packed counts rendered tokens, padded counts rows."""
    if packed:
        tokens = sum(min(len(tok.render_conversation(mixture[i])[0]), seq_len + 1) - 1 for i in range(len(mixture)))
        return max(1, math.ceil(epochs * tokens / (sequences_per_step * seq_len)))
    return max(1, math.ceil(epochs * len(mixture) / sequences_per_step))


def quick_eval(model, tok: Tokenizer, entries: list[dict[str, Any]], n: int) -> dict[str, Any]:
    from llmstack.evaluate.chat_eval import evaluate_tasks

    tasks = {e["task"]: {k: v for k, v in e.items() if k != "task"} for e in entries}
    return evaluate_tasks(model, tok, tasks, max_per_task=n, max_new_tokens=64, progress=False)


def run_chat_stage(ctx: StageContext, packed: bool) -> dict[str, Any]:
    d = start(ctx)
    cfg: ChatTrainConfig = ctx.cfg
    tok = Tokenizer.load(ctx.inputs["tokenizer"])
    model, parent = load_model(ctx.inputs["model"], "cpu")
    model.train()
    seq = model.config.seq_len
    mixture = build_mixture(cfg.mixture, seed=cfg.seed)
    val = build_mixture(cfg.val_mixture or cfg.mixture, seed=cfg.seed + 1)
    per_step = cfg.total_batch_tokens // seq
    steps = cfg.max_steps or count_steps(mixture, tok, seq, per_step, packed, cfg.num_epochs)
    val_rows = max(1, cfg.eval_tokens // seq)

    def make_val(B: int, d: Dist):
        loader = ConversationLoader(val, tok, B, seq, packed, d.rank, d.world_size)
        return itertools.islice(loader, max(1, val_rows // (B * d.world_size)))

    recipe = LMRecipe(
        cfg,
        tok,
        make_loader=lambda B, d: ConversationLoader(mixture, tok, B, seq, packed, d.rank, d.world_size),
        make_val=make_val,
        sequences_per_step=per_step,
    )
    spec = train_spec(
        ctx,
        model,
        steps,
        base_lrs=recorded_lrs(parent, ctx.inputs["model"]),
        lr_frac=cfg.init_lr_frac,
        weight_decay=cfg.weight_decay,
        grad_clip=cfg.grad_clip,
        meta={"mixture_counts": mixture.counts(), "conversations": len(mixture), "parent": parent["stage"]},
    )
    before = None
    if d.is_main and cfg.quick_eval and not parent.get("chat", False):
        # The base model on the same held-out chat questions: what chat training adds.
        before = quick_eval(model, tok, cfg.quick_eval, cfg.quick_eval_examples)
        model.train()
    metrics = Trainer(spec, recipe, d).fit()
    if d.is_main:
        if before is not None:
            metrics["quick_eval_before"] = before
            for name, r in before.items():
                ctx.print(f"quick eval of the {parent['stage']} model {name}: {r['accuracy']:.3f}")
        if cfg.quick_eval:
            metrics["quick_eval"] = quick_eval(model, tok, cfg.quick_eval, cfg.quick_eval_examples)
            for name, r in metrics["quick_eval"].items():
                ctx.print(f"quick eval {name}: {r['accuracy']:.3f} (n={r['n']})")
        ctx.print(f"val loss {metrics['val/loss']:.3f}; {len(mixture)} conversations {mixture.counts()}")
    return finish(ctx, d, metrics)
