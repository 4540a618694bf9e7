"""The data stage's three sources behind one function: embedded, hf (hub), local.

Each writes `shards/*.parquet` + `val.parquet` into the stage folder; `build_data` then writes the
manifest last, so a crashed run never leaves a folder that looks complete.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from llmstack.config import DataConfig, EmbeddedSource, HubSource, LocalSource
from llmstack.data.shards import take_bytes, write_manifest, write_parquet, write_shards


def _progress(texts: Iterable[str], total_bytes: int, desc: str) -> Iterable[str]:
    from tqdm import tqdm

    with tqdm(total=total_bytes, unit="B", unit_scale=True, desc=desc, mininterval=2.0) as bar:
        for text in texts:
            bar.update(len(text.encode("utf-8")))
            yield text


def build_embedded(cfg: EmbeddedSource, out: Path, rows_per_group: int) -> dict:
    from llmstack.data.toyworld import build_world, iter_documents

    world = build_world(cfg.seed, cfg.n_entities)
    train = take_bytes(iter_documents(world, cfg.seed), cfg.train_bytes)
    write_shards(_progress(train, cfg.train_bytes, "toy world"), out / "shards", cfg.shard_bytes, rows_per_group)
    # A different document stream over the same world: same facts, unseen texts.
    val = list(take_bytes(iter_documents(world, cfg.seed + 1_000_003), cfg.val_bytes))
    write_parquet(out / "val.parquet", val, rows_per_group)
    return {"kind": "embedded", **asdict(cfg)}


def build_hub(cfg: HubSource, out: Path) -> dict:
    from llmstack.data.hub import download_shards, fetch_file

    pattern = "shard_{index:05d}.parquet"
    download_shards(
        cfg.repo_id, cfg.n_shards, out / "shards", pattern=pattern, revision=cfg.revision, workers=cfg.workers
    )
    val = fetch_file(cfg.repo_id, pattern.format(index=cfg.val_shard), revision=cfg.revision, dest_dir=out / "download")
    os.replace(val, out / "val.parquet")
    info = {k: v for k, v in asdict(cfg).items() if k != "workers"}  # how fast it downloaded is no provenance
    return {"kind": "hf", **info}


def build_local(cfg: LocalSource, out: Path, rows_per_group: int, shard_bytes: int = 100_000_000) -> dict:
    from llmstack.data.local import LocalDataError, iter_local_texts, resolve_paths

    if not cfg.paths:
        raise ValueError("data=local needs data.local.paths, e.g. 'data.local.paths=[/data/*.parquet]'")
    if cfg.val_paths:
        # The user's own validation set: read first (smaller, and a bad glob fails before hours of
        # sharding); no training file may be in it, or validation would measure memorisation.
        both = {p.resolve() for p in resolve_paths(cfg.paths)} & {
            p.resolve() for p in resolve_paths(cfg.val_paths, "data.local.val_paths")
        }
        if both:
            raise LocalDataError(
                f"data.local.val_paths: {sorted(map(str, both))[0]} is also a training file (data.local.paths); "
                f"narrow one of the globs"
            )
        val = list(iter_local_texts(cfg.val_paths, text_column=cfg.text_column, field="data.local.val_paths"))
        write_shards(
            iter_local_texts(cfg.paths, text_column=cfg.text_column), out / "shards", shard_bytes, rows_per_group
        )
        write_parquet(out / "val.parquet", val, rows_per_group)
        return {"kind": "local", **asdict(cfg)}
    # A stable hash of each document decides its split, so adding files never reshuffles old ones.
    threshold = int(cfg.val_fraction * 2**32)
    val: list[str] = []
    seen = 0

    def train_docs() -> Iterable[str]:
        nonlocal seen
        for text in iter_local_texts(cfg.paths, text_column=cfg.text_column):
            seen += 1
            if zlib.crc32(text.encode("utf-8")) < threshold:
                val.append(text)
            else:
                yield text

    write_shards(train_docs(), out / "shards", shard_bytes, rows_per_group)
    if not val:
        raise LocalDataError(
            f"data.local: none of the {seen:,} documents fell in the validation split "
            f"(val_fraction={cfg.val_fraction}); raise data.local.val_fraction or name files in data.local.val_paths"
        )
    write_parquet(out / "val.parquet", val, rows_per_group)
    return {"kind": "local", **asdict(cfg)}


def build_data(cfg: DataConfig, out: Path) -> dict:
    """Run the configured source into `out` and return the manifest."""
    if cfg.source == "embedded":
        info = build_embedded(cfg.embedded, out, cfg.rows_per_group)
    elif cfg.source == "hf":
        info = build_hub(cfg.hf, out)
    elif cfg.source == "local":
        info = build_local(cfg.local, out, cfg.rows_per_group)
    else:
        raise ValueError(f"unknown data.source {cfg.source!r}: use embedded, hf or local")
    return write_manifest(out, info)
