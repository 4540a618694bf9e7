"""The `local` data source: parquet / jsonl / txt files by glob, in a deterministic order."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmstack.data.local import iter_local_texts, resolve_paths


def write_parquet(path, texts, column="text", row_group_size=2):
    pq.write_table(
        pa.table({column: texts, "id": list(range(len(texts)))}), path, row_group_size=row_group_size
    )


def write_jsonl(path, records, compress=False):
    lines = "".join(json.dumps(r) + "\n" for r in records)
    if compress:
        path.write_bytes(gzip.compress(lines.encode()))
    else:
        path.write_text(lines)


def test_parquet_all_row_groups_in_order(tmp_path):
    texts = [f"document {i} ünïcode" for i in range(7)]
    write_parquet(tmp_path / "a.parquet", texts + [None, ""])  # nulls and empty docs are skipped
    assert list(iter_local_texts([str(tmp_path / "*.parquet")])) == texts


def test_jsonl_text_and_messages(tmp_path):
    write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"text": "plain doc", "meta": 1},
            {
                "messages": [
                    {"role": "user", "content": "Hi?"},
                    {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
                ]
            },
        ],
    )
    write_jsonl(tmp_path / "more.jsonl.gz", [{"body": "gz doc"}], compress=True)
    files = [str(tmp_path / "docs.jsonl")]
    assert list(iter_local_texts(files)) == ["plain doc", "Hi?\n\nHello"]
    assert list(iter_local_texts([str(tmp_path / "*.gz")], text_column="body")) == ["gz doc"]


def test_txt_modes(tmp_path):
    (tmp_path / "book.txt").write_text("para one\nline two\n\n  \npara two\n\n\npara three")
    pattern = [str(tmp_path / "book.txt")]
    assert list(iter_local_texts(pattern)) == ["para one\nline two\n\n  \npara two\n\n\npara three"]
    assert list(iter_local_texts(pattern, txt_split="blank_line")) == [
        "para one\nline two",
        "para two",
        "para three",
    ]
    assert list(iter_local_texts(pattern, txt_split="line two")) == [
        "para one\n",
        "\n\n  \npara two\n\n\npara three",
    ]


def test_order_is_sorted_and_deduplicated(tmp_path):
    for name in ["b.txt", "a.txt", "c.txt"]:
        (tmp_path / name).write_text(name)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "z.txt").write_text("z")
    (tmp_path / "sub" / "notes.csv").write_text("ignored inside a folder")
    got = list(iter_local_texts([str(tmp_path / "c.txt"), str(tmp_path / "*.txt"), str(tmp_path / "sub")]))
    assert got == ["c.txt", "a.txt", "b.txt", "z"]
    assert [p.name for p in resolve_paths([str(tmp_path / "**" / "*.txt")])] == [
        "a.txt",
        "b.txt",
        "c.txt",
        "z.txt",
    ]


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="matches no files"):
        iter_local_texts([str(tmp_path / "missing" / "*.parquet")])  # fails at the call, not later
    with pytest.raises(ValueError, match="empty"):
        iter_local_texts([])
    (tmp_path / "table.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported file"):
        iter_local_texts([str(tmp_path / "table.csv")])

    write_parquet(tmp_path / "wrong.parquet", ["x"], column="content")
    with pytest.raises(ValueError, match=r"no column 'text' \(columns: content, id\)"):
        list(iter_local_texts([str(tmp_path / "wrong.parquet")]))

    write_jsonl(tmp_path / "bad.jsonl", [{"text": "ok"}, {"title": "no text"}])
    with pytest.raises(ValueError, match=r"bad.jsonl:2: no 'text' string field"):
        list(iter_local_texts([str(tmp_path / "bad.jsonl")]))
    (tmp_path / "broken.jsonl").write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(ValueError, match=r"broken.jsonl:2: not valid JSON"):
        list(iter_local_texts([str(tmp_path / "broken.jsonl")]))


def test_real_samples(shared_data):
    pretrain = shared_data / "pretrain"
    web = list(iter_local_texts([str(pretrain / "dolma_cc" / "*.jsonl*")]))
    assert len(web) == 30  # 10 documents in each of the three files, .gz included
    assert all(isinstance(t, str) and len(t) > 50 for t in web)
    assert web == list(iter_local_texts([str(pretrain / "dolma_cc")]))  # a folder means its files

    stories = list(iter_local_texts([str(pretrain / "tinystories" / "*.txt")], txt_split="<|endoftext|>"))
    assert len(stories) >= 5 and all("<|endoftext|>" not in s for s in stories)

    (shakespeare,) = iter_local_texts([str(pretrain / "tinyshakespeare" / "input.txt")])
    assert shakespeare.startswith("First Citizen:")

    responses = list(iter_local_texts([str(shared_data / "sft" / "*.jsonl")], text_column="response"))
    assert len(responses) == 1000
