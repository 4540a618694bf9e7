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

import pyarrow as pa
import pyarrow.parquet as pq

from llmstack.artifacts import IntegrityError
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


def resolve_paths(patterns: list[str], field: str = "data.local.paths") -> list[Path]:
    """Every file the globs name, each pattern's matches sorted, duplicates dropped (first wins)."""
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise ValueError(f"{field} is empty: give at least one file, folder or glob")
    files: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        matches = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
        if not matches:
            raise FileNotFoundError(f"{field}: {pattern!r} matches no files")
        for match in map(Path, matches):
            if match.is_dir():
                found = sorted(p for p in match.rglob("*") if p.is_file() and _kind(p) is not None)
                if not found:
                    raise FileNotFoundError(f"{field}: folder {str(match)!r} holds no supported files")
            else:
                if _kind(match) is None:
                    raise ValueError(
                        f"{field}: unsupported file {str(match)!r} (use .parquet, .jsonl or .txt, optionally .gz)"
                    )
                found = [match]
            for path in found:
                if path.resolve() not in seen:
                    seen.add(path.resolve())
                    files.append(path)
    return files


class LocalDataError(IntegrityError, ValueError):
    """A user's input file that cannot be used: one line naming the file (and line or row group) and
    the fix. An IntegrityError, so the stage prints it without a traceback (stages.common)."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _read_bytes(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix.lower() == ".gz" else path.read_bytes()
    except (OSError, EOFError) as err:  # a truncated or non-gzip .gz
        raise LocalDataError(f"{path}: unreadable ({_first_line(err)}); re-copy or re-compress it") from None


def _lines(path: Path) -> Iterator[bytes]:
    """The raw lines of a (gzipped) file, streamed: a jsonl corpus may not fit in memory."""
    try:
        with gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb") as f:
            yield from f
    except (OSError, EOFError) as err:
        raise LocalDataError(f"{path}: unreadable ({_first_line(err)}); re-copy or re-compress it") from None


def _decode(path: Path, raw: bytes, first_line: int = 1) -> str:
    """`raw` as UTF-8, or an error naming the line of the first bad byte and how to convert the file."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + raw[: err.start].count(b"\n")
        raise LocalDataError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); convert the file to UTF-8, "
            f"e.g. iconv -f latin1 -t utf-8 {path} > {path.stem}.utf8{path.suffix}"
        ) from None


def _iter_parquet(path: Path, text_column: str) -> Iterator[str]:
    fix = "re-export it, or drop it from the file list"
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise LocalDataError(f"{path}: not a readable parquet file ({_first_line(err)}); {fix}") from None
    if text_column not in pf.schema_arrow.names:
        raise LocalDataError(
            f"{path}: no column {text_column!r} (columns: {', '.join(pf.schema_arrow.names)}); "
            f"set data.local.text_column"
        )
    for i in range(pf.num_row_groups):
        try:
            texts = pf.read_row_group(i, columns=[text_column]).column(0).to_pylist()
        except (pa.ArrowException, OSError) as err:  # a damaged page: a decoder error names no file
            raise LocalDataError(f"{path}: row group {i} is corrupt ({_first_line(err)}); {fix}") from None
        for text in texts:
            if text:
                yield text


def _iter_jsonl(path: Path, text_column: str) -> Iterator[str]:
    for lineno, raw in enumerate(_lines(path), start=1):
        line = _decode(path, raw, lineno)
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise LocalDataError(f"{path}:{lineno}: not valid JSON ({e.msg}); fix or delete that line") from None
        if isinstance(record, dict) and isinstance(record.get(text_column), str):
            text = record[text_column]
        elif isinstance(record, dict) and isinstance(record.get("messages"), list):
            # A chat record: its messages' visible text, one paragraph per message.
            text = "\n\n".join(text_of(m) for m in record["messages"])
        else:
            raise LocalDataError(
                f"{path}:{lineno}: no {text_column!r} string field and no 'messages' list; set data.local.text_column"
            )
        if text:
            yield text


def _iter_text(path: Path, txt_split: str) -> Iterator[str]:
    content = _decode(path, _read_bytes(path))
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
    patterns: list[str], *, text_column: str = "text", txt_split: str = "file", field: str = "data.local.paths"
) -> Iterator[str]:
    """Documents of the files matched by `patterns`, in a deterministic order.

    `txt_split` says how a text file becomes documents: "file" (the whole file is one document),
    "blank_line" (paragraphs separated by blank lines), or any other string, used as a literal
    separator (e.g. "<|endoftext|>"). Empty documents are skipped. The globs are checked here, at
    the call; a file lacking the column fails when the stream reaches it. `field` names the setting
    the patterns come from in error messages.
    """
    if not txt_split:
        raise ValueError("txt_split must be 'file', 'blank_line' or a non-empty separator")
    return _iter_files(resolve_paths(patterns, field), text_column, txt_split)


def _iter_files(paths: list[Path], text_column: str, txt_split: str) -> Iterator[str]:
    readers = {"parquet": _iter_parquet, "jsonl": _iter_jsonl}
    for path in paths:
        kind = _kind(path)
        documents = 0
        for text in readers[kind](path, text_column) if kind in readers else _iter_text(path, txt_split):
            documents += 1
            yield text
        if documents == 0:  # most likely a wrong or half-written file: say so rather than train without it
            raise LocalDataError(
                f"{path}: no documents (empty, or only blank text); fill it or drop it from the file list"
            )
