"""The `local` data source: documents from the user's own parquet, jsonl and text files.

    data=local data.local.paths='[~/corpus/*.parquet, notes/*.txt]'

`iter_local_texts` expands each glob (a folder stands for every supported file under it), reads
the files in sorted order and yields one string per document, so the same files always give the
same stream. Formats, chosen by suffix (a trailing .gz is decompressed):
- .parquet: the `text_column` column, row group by row group;
- .jsonl / .ndjson: the `text_column` field, or a `messages` conversation flattened to its texts;
- .txt / .md / .raw / .text: the whole file as one document, or split (see `txt_split`).
"""

from __future__ import annotations

import glob
import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from llmstack.conversation import text_of

PARQUET_SUFFIXES = (".parquet",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
TEXT_SUFFIXES = (".txt", ".md", ".raw", ".text")
_BLANK_LINE = re.compile(r"\n(?:[ \t]*\n)+")  # one or more blank (or blank-looking) lines


def _kind(path: Path) -> str | None:
    """'parquet', 'jsonl', 'text' or None for an unsupported file; `.gz` is looked through."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in PARQUET_SUFFIXES and not path.name.lower().endswith(".gz"):
        return "parquet"
    if last in JSONL_SUFFIXES:
        return "jsonl"
    if last in TEXT_SUFFIXES:
        return "text"
    return None


def resolve_paths(patterns: list[str]) -> list[Path]:
    """Every file the globs name, each pattern's matches sorted, duplicates dropped (first wins)."""
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise ValueError("data.local.paths is empty: give at least one file, folder or glob")
    files: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        matches = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
        if not matches:
            raise FileNotFoundError(f"data.local.paths: {pattern!r} matches no files")
        for match in map(Path, matches):
            if match.is_dir():
                found = sorted(p for p in match.rglob("*") if p.is_file() and _kind(p) is not None)
                if not found:
                    raise FileNotFoundError(
                        f"data.local.paths: folder {str(match)!r} holds no supported files"
                    )
            else:
                if _kind(match) is None:
                    raise ValueError(
                        f"data.local.paths: unsupported file {str(match)!r} "
                        f"(use .parquet, .jsonl or .txt, optionally .gz)"
                    )
                found = [match]
            for path in found:
                if path.resolve() not in seen:
                    seen.add(path.resolve())
                    files.append(path)
    return files


def _open_text(path: Path):
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _iter_parquet(path: Path, text_column: str) -> Iterator[str]:
    pf = pq.ParquetFile(path)
    if text_column not in pf.schema_arrow.names:
        raise ValueError(
            f"{path}: no column {text_column!r} (columns: {', '.join(pf.schema_arrow.names)}); "
            f"set data.local.text_column"
        )
    for i in range(pf.num_row_groups):
        for text in pf.read_row_group(i, columns=[text_column]).column(0).to_pylist():
            if text:
                yield text


def _iter_jsonl(path: Path, text_column: str) -> Iterator[str]:
    with _open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if isinstance(record, dict) and isinstance(record.get(text_column), str):
                text = record[text_column]
            elif isinstance(record, dict) and isinstance(record.get("messages"), list):
                # A chat record: its messages' visible text, one paragraph per message.
                text = "\n\n".join(text_of(m) for m in record["messages"])
            else:
                raise ValueError(f"{path}:{lineno}: no {text_column!r} string field and no 'messages' list")
            if text:
                yield text


def _iter_text(path: Path, txt_split: str) -> Iterator[str]:
    with _open_text(path) as f:
        content = f.read()
    if txt_split == "file":
        docs = [content]
    elif txt_split == "blank_line":
        docs = _BLANK_LINE.split(content)
    else:
        docs = content.split(txt_split)
    for doc in docs:
        if doc.strip():
            yield doc


def iter_local_texts(
    patterns: list[str], *, text_column: str = "text", txt_split: str = "file"
) -> Iterator[str]:
    """Documents of the files matched by `patterns`, in a deterministic order.

    `txt_split` says how a text file becomes documents: "file" (the whole file is one document),
    "blank_line" (paragraphs separated by blank lines), or any other string, used as a literal
    separator (e.g. "<|endoftext|>"). Empty documents are skipped. The globs are checked here, at
    the call; a file lacking the column fails when the stream reaches it.
    """
    if not txt_split:
        raise ValueError("txt_split must be 'file', 'blank_line' or a non-empty separator")
    return _iter_files(resolve_paths(patterns), text_column, txt_split)


def _iter_files(paths: list[Path], text_column: str, txt_split: str) -> Iterator[str]:
    for path in paths:
        kind = _kind(path)
        if kind == "parquet":
            yield from _iter_parquet(path, text_column)
        elif kind == "jsonl":
            yield from _iter_jsonl(path, text_column)
        else:
            yield from _iter_text(path, txt_split)
