"""Parquet shards with one `text` column, and the manifest that describes a data stage folder.

Layout of a data stage folder:
    shards/shard_00000.parquet ...   training documents (zstd, row groups of `rows_per_group`)
    val.parquet                      validation documents
    manifest.json                    rows, text bytes, file bytes and sha256 of every file

Stages open a data folder through `shard_paths` (or `validation_file`), which check the files first,
so a damaged shard is named (with the command that rebuilds it) before any work, not found by a
decoder error deep in a job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llmstack.artifacts import (
    IntegrityError,
    atomic_path,
    rebuild_hint,
    sha256_file,
    sha256_once,
    stage_folder,
    write_json,
)

SCHEMA = pa.schema([("text", pa.string())])


def write_parquet(path: Path, texts: list[str], rows_per_group: int = 1024) -> None:
    """Write `texts` as a one-column parquet file, atomically."""
    table = pa.Table.from_pydict({"text": texts}, schema=SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=rows_per_group)


def write_shards(
    texts: Iterable[str], out_dir: Path, shard_bytes: int, rows_per_group: int = 1024
) -> list[Path]:
    """Split a document stream into shards of about `shard_bytes` UTF-8 bytes each."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    buf: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal buf, size
        path = out_dir / f"shard_{len(paths):05d}.parquet"
        write_parquet(path, buf, rows_per_group)
        paths.append(path)
        buf, size = [], 0

    for text in texts:
        buf.append(text)
        size += len(text.encode("utf-8"))
        if size >= shard_bytes:
            flush()
    if buf:
        flush()
    return paths


def take_bytes(texts: Iterable[str], n_bytes: int) -> Iterator[str]:
    """Documents from `texts` until about `n_bytes` UTF-8 bytes have been yielded."""
    total = 0
    for text in texts:
        if total >= n_bytes:
            return
        total += len(text.encode("utf-8"))
        yield text


def describe(path: Path, root: Path) -> dict:
    """Rows, text bytes, file bytes and checksum of one parquet file."""
    table = pq.read_table(path, columns=["text"])
    text_bytes = sum(len(t.encode("utf-8")) for t in table.column("text").to_pylist())
    return {
        "file": str(path.relative_to(root)),
        "rows": table.num_rows,
        "text_bytes": text_bytes,
        "file_bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }


def write_manifest(root: Path, source: dict) -> dict:
    """Describe `root`'s shards and val file in manifest.json (written last, atomically)."""
    shards = [describe(p, root) for p in sorted((root / "shards").glob("*.parquet"))]
    if not shards:
        raise RuntimeError(f"no training shards were written under {root / 'shards'}")
    val = describe(root / "val.parquet", root)
    manifest = {
        "source": source,
        "shards": shards,
        "val": val,
        "rows": sum(s["rows"] for s in shards),
        "text_bytes": sum(s["text_bytes"] for s in shards),
    }
    write_json(root / "manifest.json", manifest)
    return manifest


def _damaged(path: Path, manifest_path: Path, kind: str, why: str) -> IntegrityError:
    where = stage_folder(manifest_path)
    folder = where[1] if where else Path(manifest_path).parent
    return IntegrityError(f"{kind} data shard {path} ({why}, {manifest_path}); " + rebuild_hint("data", folder))


def read_manifest(path: Path, hashes: bool = False) -> dict:
    """Load a data manifest (the data stage's declared output) and check its files against it.

    Cost: every file's existence and size (one stat each) always; with `hashes`, every file's sha256
    too, read once per process (artifacts.sha256_once): about the time to read the shards from disk
    (about 1-2 s per GB on one core), paid by each process of a multi-process stage, in parallel.
    """
    manifest = json.loads(Path(path).read_text())
    for entry in [*manifest["shards"], manifest["val"]]:
        _verify(entry, Path(path), hashes)
    return manifest


def _verify(entry: dict, manifest_path: Path, hashed: bool) -> Path:
    """One manifest entry's file: present, of the recorded size and (if `hashed`) sha256."""
    file = manifest_path.parent / entry["file"]
    if not file.is_file():
        raise _damaged(file, manifest_path, "missing", "listed in")
    size = file.stat().st_size
    if "file_bytes" in entry and size != entry["file_bytes"]:
        raise _damaged(file, manifest_path, "corrupt", f"{size} bytes, {entry['file_bytes']} recorded in")
    if hashed and "sha256" in entry and sha256_once(file) != entry["sha256"]:
        raise _damaged(file, manifest_path, "corrupt", "its sha256 differs from the one recorded in")
    return file


def shard_paths(manifest_path: Path) -> tuple[list[Path], Path]:
    """(training shard paths, validation path) of a data stage folder, every file verified (read_manifest)."""
    manifest = read_manifest(manifest_path, hashes=True)
    root = Path(manifest_path).parent
    return [root / s["file"] for s in manifest["shards"]], root / manifest["val"]["file"]


def validation_file(manifest_path: Path) -> tuple[Path, dict]:
    """(validation path, manifest) for a stage that reads only the validation file (base_eval):
    every file's size checked, only that file hashed."""
    manifest = read_manifest(manifest_path)
    return _verify(manifest["val"], Path(manifest_path), hashed=True), manifest


def iter_texts(paths: Iterable[Path]) -> Iterator[str]:
    """Every document of the given parquet files, in order, one row group at a time."""
    for path in paths:
        pf = pq.ParquetFile(path)
        for i in range(pf.num_row_groups):
            yield from pf.read_row_group(i, columns=["text"]).column("text").to_pylist()
