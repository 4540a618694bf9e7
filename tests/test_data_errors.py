"""Bad `data=local` inputs fail the data stage in one line that names the file (and line or row
group) and the fix; an explicit validation glob is used; a validation set smaller than the
evaluation budget is reported rather than silently repeated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_end_to_end import SMALL

from llmstack.config import compose_config
from llmstack.data.toyworld import build_world, iter_documents
from llmstack.plan import stage_slice

REPO = Path(__file__).resolve().parents[1]


def data_stage_error(tmp_path: Path, files: str) -> str:
    """Run the data stage on `files`; it must fail, and its last line is returned."""
    body = stage_slice(compose_config("tiny", ["data=local", f"data.local.paths=[{files}]"]), "data")
    cmd = [sys.executable, "-m", "llmstack.stages.data", str(tmp_path / "out"), "--config", json.dumps(body)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0, res.stdout
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    return res.stderr.strip().splitlines()[-1]


def test_empty_text_file(tmp_path):
    (tmp_path / "good.txt").write_text("some text\n")
    (tmp_path / "empty.txt").write_text("\n  \n")
    line = data_stage_error(tmp_path, f"{tmp_path}/*.txt")
    assert f"{tmp_path}/empty.txt: no documents" in line and "drop it" in line and "val_fraction" not in line


def test_non_utf8_text(tmp_path):
    (tmp_path / "latin.txt").write_bytes("first line\nsecond caf\xe9 line\n".encode("latin-1"))
    line = data_stage_error(tmp_path, f"{tmp_path}/latin.txt")
    assert f"{tmp_path}/latin.txt:2: not UTF-8 text (byte 0xe9)" in line and "iconv" in line


def test_non_utf8_jsonl_line(tmp_path):
    (tmp_path / "docs.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    line = data_stage_error(tmp_path, f"{tmp_path}/docs.jsonl")
    assert f"{tmp_path}/docs.jsonl:2: not UTF-8 text" in line


@pytest.mark.parametrize("damage", ["header", "page"])
def test_corrupt_parquet(tmp_path, damage):
    path = tmp_path / "corpus.parquet"
    texts = [f"document number {i} " * 20 for i in range(40)]
    pq.write_table(pa.table({"text": texts}), path, row_group_size=10, compression="zstd")
    raw = bytearray(path.read_bytes())
    if damage == "header":
        raw = raw[: len(raw) // 2]  # a truncated copy: no footer
    else:
        start = pq.ParquetFile(path).metadata.row_group(1).column(0).data_page_offset
        raw[start : start + 64] = b"\xff" * 64  # a damaged data page of row group 1, the footer intact
    path.write_bytes(bytes(raw))
    line = data_stage_error(tmp_path, str(path))
    assert str(path) in line and "re-export" in line
    if damage == "page":
        assert "row group 1 is corrupt" in line


def test_explicit_val_glob_and_small_val_warning(tmp_path):
    docs = iter_documents(build_world(0, 16), 0)
    with open(tmp_path / "train.jsonl", "w") as f:
        for _, text in zip(range(400), docs, strict=False):
            f.write(json.dumps({"text": text}) + "\n")
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "v.jsonl").write_text(json.dumps({"text": "Tiny validation text."}) + "\n")
    local = f"data=local data.local.paths=[{tmp_path}/train.jsonl] data.local.val_paths=[{tmp_path}/val/*.jsonl]"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", "--until", "pretrain"]
    cmd += ["--config", f"overrides={SMALL} {local} tokenizer.max_chars=100000"]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-4000:]
    (manifest,) = tmp_path.glob("artifacts/data/*/manifest.json")
    assert json.loads(manifest.read_text())["val"]["rows"] == 1  # the val file, nothing held out by hash
    (log,) = tmp_path.glob("artifacts/pretrain/*/pretrain.log")
    warnings = [line for line in log.read_text().splitlines() if line.startswith("warning: the validation set")]
    assert len(warnings) == 1 and "1,024" in warnings[0] and "repeats" in warnings[0], warnings
