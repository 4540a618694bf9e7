"""Data stage: write training shards, a validation shard and a manifest.

python -m llmstack.stages.data artifacts/data/<key> --config '{"data": {...}}'
"""

from __future__ import annotations

from typing import Any

from llmstack.data.sources import build_data
from llmstack.stages.common import StageContext, stage_main


def run(ctx: StageContext) -> dict[str, Any]:
    manifest = build_data(ctx.cfg, ctx.dir)
    ctx.print(
        f"{len(manifest['shards'])} shards, {manifest['rows']:,} documents, "
        f"{manifest['text_bytes'] / 1e6:.1f} MB of text; val {manifest['val']['rows']:,} documents"
    )
    return {"shards": len(manifest["shards"]), "documents": manifest["rows"], "text_bytes": manifest["text_bytes"]}


if __name__ == "__main__":
    stage_main("data", run)
