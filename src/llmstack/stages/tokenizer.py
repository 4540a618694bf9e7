"""Tokenizer stage: train the sentencepiece BPE tokenizer with chat special tokens.

python -m llmstack.stages.tokenizer artifacts/tokenizer/<key> --config ... --input data=<manifest>
"""

from __future__ import annotations

from typing import Any

from llmstack.artifacts import write_json
from llmstack.config import TokenizerConfig
from llmstack.data.shards import iter_texts, shard_paths
from llmstack.stages.common import StageContext, stage_main
from llmstack.tokenizer import Tokenizer, tokenizer_stats, train_tokenizer


def run(ctx: StageContext) -> dict[str, Any]:
    cfg: TokenizerConfig = ctx.cfg
    shards, val = shard_paths(ctx.inputs["data"])
    out = ctx.stage.declared
    path = train_tokenizer(
        iter_texts(shards),
        ctx.dir / out["model"],
        vocab_size=cfg.vocab_size,
        max_chars=cfg.max_chars,
        threads=cfg.threads,
    )
    stats = tokenizer_stats(Tokenizer.load(path), list(iter_texts([val])))
    write_json(ctx.dir / out["stats"], stats)
    ctx.print(f"vocab {stats['vocab_size']}, {stats['bytes_per_token']:.3f} bytes/token on val")
    return {"vocab_size": stats["vocab_size"], "bytes_per_token": stats["bytes_per_token"]}


if __name__ == "__main__":
    stage_main("tokenizer", run)
