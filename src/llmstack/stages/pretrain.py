"""Pretrain stage: a GPT from scratch on the data stage's shards (torchrun for several processes).

    python -m llmstack.launch pretrain artifacts/pretrain/<key> --config JSON \
        --input data=artifacts/data/<key>/manifest.json --input tokenizer=artifacts/tokenizer/<key>/tokenizer.model
"""

from __future__ import annotations

from typing import Any

import torch

from llmstack.config import ModelConfig, PretrainConfig
from llmstack.data.shards import shard_paths
from llmstack.dataloader import TextLoader, val_batches
from llmstack.harness import BASE_LRS, Trainer
from llmstack.model import GPT, GPTConfig
from llmstack.stages.common import StageContext, stage_main
from llmstack.stages.trained import finish, start, train_spec
from llmstack.tokenizer import Tokenizer
from llmstack.train import LMRecipe

SAMPLE_PROMPTS = ["Once upon a time", "The word 'apple' is spelled", "Question: What is 7 + 5?"]


def build_model(m: ModelConfig, vocab_size: int, seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(
        GPTConfig(
            vocab_size=vocab_size,
            seq_len=m.seq_len,
            n_layer=m.depth,
            n_embd=m.n_embd,
            n_head=m.n_head,
            n_kv_head=m.n_kv_head,
            softcap=m.softcap,
        )
    )


def run(ctx: StageContext) -> dict[str, Any]:
    d = start(ctx)
    cfg: PretrainConfig = ctx.cfg
    m: ModelConfig = ctx.sections["model"]
    tok = Tokenizer.load(ctx.inputs["tokenizer"])
    if tok.vocab_size != m.vocab_size:
        raise ValueError(f"tokenizer has {tok.vocab_size} tokens but model.vocab_size={m.vocab_size}")
    shards, val = shard_paths(ctx.inputs["data"])
    seq = m.seq_len
    recipe = LMRecipe(
        cfg,
        tok,
        make_loader=lambda B, d: TextLoader(shards, tok, B, seq, d.rank, d.world_size),
        make_val=lambda B, d: val_batches([val], tok, B, seq, cfg.eval_tokens, d.rank, d.world_size),
        sequences_per_step=cfg.total_batch_tokens // seq,
        sample_prompts=SAMPLE_PROMPTS,
        sample_every=cfg.sample_every,
    )
    spec = train_spec(
        ctx,
        build_model(m, tok.vocab_size, cfg.seed),
        cfg.max_steps,
        base_lrs={k: getattr(cfg, k) for k in BASE_LRS},
        weight_decay=cfg.weight_decay,
        grad_clip=cfg.grad_clip,
        meta={"tokens": cfg.max_steps * cfg.total_batch_tokens},
    )
    metrics = Trainer(spec, recipe, d).fit()
    if d.is_main:
        ctx.print(
            f"val bpb {metrics['val/bpb_first']:.3f} -> {metrics['val/bpb']:.3f}; "
            f"{metrics['tok_per_s'] or 0:,.0f} tok/s"
        )
        for s in metrics["samples"]:
            ctx.print(f"sample: {s!r}")
    return finish(ctx, d, metrics)


if __name__ == "__main__":
    stage_main("pretrain", run)
