"""Midtraining and SFT: the pretraining loop (train.py) on rendered conversations.

midtrain: conversations packed into full rows (special tokens, tool use, multiple choice).
sft:      one conversation per row, padded; loss on assistant tokens only (the chat mask).
Both continue from the previous stage's model.pt, with LRs at `init_lr_frac` of the config's, and
finish with a quick check on held-out items (`quick_eval`) recorded in metrics.json.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from llmstack import distributed
from llmstack.checkpoint import load_model
from llmstack.dataloader import ConversationLoader
from llmstack.stages.common import StageContext, write_json
from llmstack.tasks.mixture import build_mixture
from llmstack.tokenizer import Tokenizer
from llmstack.train import TrainJob, run_training


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


def run_chat_stage(ctx: StageContext, packed: bool) -> None:
    d = distributed.init(ctx.execution.get("device", "auto"))
    cfg = {**ctx.section(), **ctx.execution}
    tok = Tokenizer.load(ctx.inputs["tokenizer"])
    model, parent = load_model(ctx.inputs["model"], "cpu")
    model.train()
    seq = model.config.seq_len
    mixture = build_mixture(cfg["mixture"], seed=cfg["seed"])
    val = build_mixture(cfg["val_mixture"] or cfg["mixture"], seed=cfg["seed"] + 1)
    per_step = cfg["total_batch_tokens"] // seq
    steps = cfg["max_steps"] or count_steps(mixture, tok, seq, per_step, packed, cfg["num_epochs"])
    val_rows = max(1, cfg["eval_tokens"] // seq)

    def make_val(B: int, d: distributed.Dist):
        loader = ConversationLoader(val, tok, B, seq, packed, d.rank, d.world_size)
        return itertools.islice(loader, max(1, val_rows // (B * d.world_size)))

    job = TrainJob(
        stage=ctx.stage,
        out_dir=ctx.dir,
        cfg=cfg,
        model=model,
        tokenizer=tok,
        make_loader=lambda B, d: ConversationLoader(mixture, tok, B, seq, packed, d.rank, d.world_size),
        make_val=make_val,
        total_steps=steps,
        sequences_per_step=per_step,
        lr_frac=cfg["init_lr_frac"],
        fingerprint=ctx.fingerprint(),
        meta={"mixture_counts": mixture.counts(), "conversations": len(mixture), "parent": parent.get("stage")},
    )
    before = None
    if d.is_main and cfg["quick_eval"] and parent.get("stage") == "pretrain":
        # The base model on the same held-out chat questions: what chat training adds.
        before = quick_eval(model, tok, cfg["quick_eval"], cfg["quick_eval_examples"])
        model.train()
    metrics = run_training(job, d)
    if d.is_main:
        if before is not None:
            metrics["quick_eval_before"] = before
            for name, r in before.items():
                print(
                    f"[{ctx.stage}] quick eval of the {parent['stage']} model {name}: {r['accuracy']:.3f}", flush=True
                )
        if cfg["quick_eval"]:
            metrics["quick_eval"] = quick_eval(model, tok, cfg["quick_eval"], cfg["quick_eval_examples"])
            for name, r in metrics["quick_eval"].items():
                print(f"[{ctx.stage}] quick eval {name}: {r['accuracy']:.3f} (n={r['n']})", flush=True)
        write_json(ctx.dir / "metrics.json", metrics)
        print(
            f"[{ctx.stage}] val loss {metrics['val/loss']:.3f}; {len(mixture)} conversations {mixture.counts()}",
            flush=True,
        )
    distributed.shutdown()
