"""Pretrain stage: a GPT from scratch on the data stage's shards (torchrun for several processes).

    python -m llmstack.launch pretrain artifacts/pretrain/<key> --config JSON \
        --input data=artifacts/data/<key>/manifest.json --input tokenizer=artifacts/tokenizer/<key>/tokenizer.model
"""

from __future__ import annotations

import torch

from llmstack import distributed
from llmstack.data.shards import shard_paths
from llmstack.dataloader import TextLoader, val_batches
from llmstack.model import GPT, GPTConfig
from llmstack.stages.common import StageContext, stage_main, write_json
from llmstack.tokenizer import Tokenizer
from llmstack.train import TrainJob, run_training

SAMPLE_PROMPTS = ["Once upon a time", "The word 'apple' is spelled", "Question: What is 7 + 5?"]


def build_model(model_cfg: dict, vocab_size: int, seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(
        GPTConfig(
            vocab_size=vocab_size,
            seq_len=model_cfg["seq_len"],
            n_layer=model_cfg["depth"],
            n_embd=model_cfg["n_embd"],
            n_head=model_cfg["n_head"],
            n_kv_head=model_cfg["n_kv_head"],
            softcap=model_cfg["softcap"],
        )
    )


def run(ctx: StageContext) -> None:
    d = distributed.init(ctx.execution.get("device", "auto"))
    cfg = {**ctx.section("pretrain"), **ctx.execution}
    m = ctx.section("model")
    tok = Tokenizer.load(ctx.inputs["tokenizer"])
    if tok.vocab_size != m["vocab_size"]:
        raise ValueError(f"tokenizer has {tok.vocab_size} tokens but model.vocab_size={m['vocab_size']}")
    shards, val = shard_paths(ctx.inputs["data"])
    seq = m["seq_len"]
    job = TrainJob(
        stage="pretrain",
        out_dir=ctx.dir,
        cfg=cfg,
        model=build_model(m, tok.vocab_size, cfg["seed"]),
        tokenizer=tok,
        make_loader=lambda B, d: TextLoader(shards, tok, B, seq, d.rank, d.world_size),
        make_val=lambda B, d: val_batches([val], tok, B, seq, cfg["eval_tokens"], d.rank, d.world_size),
        total_steps=cfg["max_steps"],
        sequences_per_step=cfg["total_batch_tokens"] // seq,
        sample_prompts=SAMPLE_PROMPTS,
        fingerprint=ctx.fingerprint(),
        meta={"tokens": cfg["max_steps"] * cfg["total_batch_tokens"]},
    )
    metrics = run_training(job, d)
    if d.is_main:
        write_json(ctx.dir / "metrics.json", metrics)
        print(
            f"[pretrain] val bpb {metrics['val/bpb_first']:.3f} -> {metrics['val/bpb']:.3f}; "
            f"{metrics['tok_per_s'] or 0:,.0f} tok/s",
            flush=True,
        )
        for s in metrics["samples"]:
            print(f"[pretrain] sample: {s!r}", flush=True)
    distributed.shutdown()


if __name__ == "__main__":
    stage_main("pretrain", run)
