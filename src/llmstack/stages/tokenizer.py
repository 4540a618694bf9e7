"""Tokenizer stage: train the sentencepiece BPE tokenizer with chat special tokens.

python -m llmstack.stages.tokenizer artifacts/tokenizer/<key> --config ... --input data=<manifest>
"""

from __future__ import annotations

from llmstack.data.shards import iter_texts, shard_paths
from llmstack.stages.common import StageContext, stage_main, write_json
from llmstack.tokenizer import Tokenizer, tokenizer_stats, train_tokenizer


def run(ctx: StageContext) -> None:
    cfg = ctx.section()
    shards, val = shard_paths(ctx.inputs["data"])
    path = train_tokenizer(
        iter_texts(shards),
        ctx.dir / "tokenizer.model",
        vocab_size=cfg["vocab_size"],
        max_chars=cfg["max_chars"],
        threads=ctx.execution.get("threads", 2),
    )
    stats = tokenizer_stats(Tokenizer.load(path), list(iter_texts([val])))
    write_json(ctx.dir / "tokenizer.json", stats)
    print(f"[tokenizer] vocab {stats['vocab_size']}, {stats['bytes_per_token']:.3f} bytes/token on val")


if __name__ == "__main__":
    stage_main("tokenizer", run)
