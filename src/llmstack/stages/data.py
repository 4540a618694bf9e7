"""Data stage: write training shards, a validation shard and a manifest.

python -m llmstack.stages.data artifacts/data/<key> --config '{"data": {...}}'
"""

from __future__ import annotations

from llmstack.data.sources import build_data
from llmstack.stages.common import StageContext, stage_main


def run(ctx: StageContext) -> None:
    manifest = build_data(ctx.section(), ctx.dir)
    print(
        f"[data] {len(manifest['shards'])} shards, {manifest['rows']:,} documents, "
        f"{manifest['text_bytes'] / 1e6:.1f} MB of text; val {manifest['val']['rows']:,} documents"
    )


if __name__ == "__main__":
    stage_main("data", run)
