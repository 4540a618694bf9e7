"""The `hf` data source against a local fake hub: verified, retried, resumable, fast to fail offline."""

from __future__ import annotations

import io
import socket
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hubserver import FakeHub, fake_hub_fixture, use_hub_endpoint  # noqa: F401  (provides `fake_hub`)

from llmstack.data.hub import (
    HubDownloadError,
    HubUnavailableError,
    download_shards,
    fetch_file,
)

REPO = "someone/tiny-pretrain"
FAST = {"backoff_s": 0.01}


def shard_bytes(index: int, n_docs: int = 50) -> bytes:
    texts = [f"shard {index} document {i}: " + "lorem ipsum " * (i % 7 + 1) for i in range(n_docs)]
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": texts}), buf, compression="zstd", row_group_size=16)
    return buf.getvalue()


def add_shards(hub: FakeHub, n: int) -> dict[str, bytes]:
    shards = {f"shard_{i:05d}.parquet": shard_bytes(i) for i in range(n)}
    for name, data in shards.items():
        hub.add_file(REPO, name, data)
    return shards


def test_download_shards_verified(fake_hub, tmp_path):
    shards = add_shards(fake_hub, 4)
    paths = download_shards(REPO, 4, tmp_path / "shards", workers=3, **FAST)
    assert [p.name for p in paths] == list(shards)
    for path in paths:
        assert path.read_bytes() == shards[path.name]
        table = pq.read_table(path)
        assert table.column_names == ["text"] and table.num_rows == 50
    # Only the shards (and the hidden bookkeeping folder) sit in the destination.
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [".hub", *shards]
    assert all(fake_hub.body_downloads(name) == 1 for name in shards)


def test_transient_failures_are_retried(fake_hub, tmp_path):
    shards = add_shards(fake_hub, 2)
    fake_hub.fail_first["shard_00000.parquet"] = 2  # metadata requests fail twice
    fake_hub.fail_body_first["shard_00001.parquet"] = 1  # the byte download fails once
    paths = download_shards(REPO, 2, tmp_path, workers=2, **FAST)
    assert [p.read_bytes() for p in paths] == list(shards.values())
    assert fake_hub.count("shard_00000.parquet", "HEAD") >= 3
    assert fake_hub.count("shard_00001.parquet", "CDN-GET") == 2


def test_failing_forever_gives_up_clearly(fake_hub, tmp_path):
    add_shards(fake_hub, 1)
    fake_hub.fail_first["shard_00000.parquet"] = 1000
    with pytest.raises(HubDownloadError) as err:
        fetch_file(REPO, "shard_00000.parquet", dest_dir=tmp_path, retries=2, **FAST)
    msg = str(err.value)
    assert "failed after 3 attempts" in msg and "500" in msg and "\n" not in msg
    assert not (tmp_path / "shard_00000.parquet").exists()


def test_corrupt_download_is_detected_and_refetched(fake_hub, tmp_path):
    shards = add_shards(fake_hub, 1)
    fake_hub.corrupt_first["shard_00000.parquet"] = (
        1  # same size, one byte flipped: only the sha256 catches it
    )
    path = fetch_file(REPO, "shard_00000.parquet", dest_dir=tmp_path, **FAST)
    assert path.read_bytes() == shards["shard_00000.parquet"]
    assert fake_hub.body_downloads("shard_00000.parquet") == 2


def test_always_corrupt_fails_and_leaves_nothing(fake_hub, tmp_path):
    add_shards(fake_hub, 1)
    fake_hub.corrupt_first["shard_00000.parquet"] = -1
    with pytest.raises(HubDownloadError, match="checksum"):
        fetch_file(REPO, "shard_00000.parquet", dest_dir=tmp_path, retries=1, **FAST)
    assert not (tmp_path / "shard_00000.parquet").exists()
    assert not list((tmp_path / ".hub" / "staging").glob("*.parquet"))


def test_git_stored_file_checked_by_blob_sha1_in_cache(fake_hub):
    readme = b"# tiny pretrain\nshards of text\n"
    fake_hub.add_file(REPO, "README.md", readme, lfs=False)
    fake_hub.corrupt_first["README.md"] = 1
    path = fetch_file(REPO, "README.md", **FAST)  # no dest_dir: huggingface_hub's cache
    assert path.read_bytes() == readme
    assert "datasets--someone--tiny-pretrain" in str(path)
    assert fake_hub.body_downloads("README.md") == 2


def test_resume_skips_verified_shards(fake_hub, tmp_path, monkeypatch):
    shards = add_shards(fake_hub, 3)
    download_shards(REPO, 2, tmp_path, **FAST)
    before = list(fake_hub.requests)
    paths = download_shards(REPO, 3, tmp_path, **FAST)
    new = fake_hub.requests[len(before) :]
    assert {path for _, path in new} == {"shard_00002.parquet"}
    assert [p.read_bytes() for p in paths] == list(shards.values())
    # Everything already here: a rerun needs no network at all.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert download_shards(REPO, 3, tmp_path, **FAST) == paths


def test_existing_files_without_record_are_verified_not_trusted(fake_hub, tmp_path):
    shards = add_shards(fake_hub, 2)
    (tmp_path / "shard_00000.parquet").write_bytes(shards["shard_00000.parquet"])  # complete copy
    (tmp_path / "shard_00001.parquet").write_bytes(shards["shard_00001.parquet"][:100])  # truncated
    paths = download_shards(REPO, 2, tmp_path, **FAST)
    assert [p.read_bytes() for p in paths] == list(shards.values())
    assert fake_hub.body_downloads("shard_00000.parquet") == 0  # hash matched: kept
    assert fake_hub.body_downloads("shard_00001.parquet") == 1


def test_missing_file_or_repo_fails_without_retrying(fake_hub, tmp_path):
    add_shards(fake_hub, 1)
    t0 = time.monotonic()
    with pytest.raises(HubDownloadError, match="'shard_00001.parquet' not found"):
        download_shards(REPO, 6, tmp_path, workers=1, backoff_s=5.0)
    with pytest.raises(HubDownloadError, match="repository not found"):
        fetch_file("nobody/nothing", "x.parquet", dest_dir=tmp_path, backoff_s=5.0)
    assert time.monotonic() - t0 < 5.0  # no backoff was waited


def assert_offline_message(err: HubUnavailableError) -> None:
    msg = str(err)
    assert "\n" not in msg
    assert "data=embedded" in msg and "data=local" in msg


def test_offline_mode_fails_fast(fake_hub, tmp_path, monkeypatch):
    add_shards(fake_hub, 1)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(HubUnavailableError) as err:
        download_shards(REPO, 1, tmp_path)
    assert_offline_message(err.value)
    assert "HF_HUB_OFFLINE" in str(err.value)
    with pytest.raises(HubUnavailableError):
        fetch_file(REPO, "shard_00000.parquet")
    assert time.monotonic() - t0 < 2.0
    assert fake_hub.requests == []


def test_unreachable_endpoint_fails_fast(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    use_hub_endpoint(monkeypatch, f"http://127.0.0.1:{port}", tmp_path / "hf_home")
    t0 = time.monotonic()
    with pytest.raises(HubUnavailableError) as err:
        download_shards(REPO, 3, tmp_path / "shards", retries=3, backoff_s=1.0)
    assert time.monotonic() - t0 < 3.0
    assert_offline_message(err.value)
    assert f"127.0.0.1:{port}" in str(err.value)
