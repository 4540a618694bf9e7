"""The `hf` data source: files and pretraining shards from the Hugging Face hub, verified and resumable.

    from llmstack.data.hub import download_shards
    download_shards("karpathy/fineweb-edu-100b-shuffle", n_shards=8, dest_dir=Path("shards"))

A file gets its final name only after it matched the hub's own metadata: its size, and the
content hash the hub publishes as its ETag (sha256 for LFS/Xet files, the git blob sha1 for small
files kept in git). A mismatch deletes the file and downloads it again. `dest_dir/.hub/` keeps
hf's staging area and one record per verified file, so a rerun skips finished files without
touching the network. Transient failures (5xx, 429, timeouts, dropped streams) are retried with
exponential backoff; a hub that cannot be reached at all (HF_HUB_OFFLINE=1, no route, refused
connection) fails at once with HubUnavailableError, whose one-line message names the offline
data sources. HF_ENDPOINT and HF_TOKEN are honoured as huggingface_hub documents them.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from tqdm.auto import tqdm

from llmstack.data.download import describe_error

# Retried status codes: the hub's own list (timeouts, rate limits, server errors).
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
# Exception class names (httpx, httpx2 or requests, depending on the huggingface_hub version)
# that mean "no connection to the host at all" when they happen on the first request for a file.
_UNREACHABLE = {"ConnectError", "ConnectTimeout", "ConnectionError", "ProxyError", "OfflineModeIsEnabled"}
# ... and those that mean a transfer broke half-way and is worth retrying.
_TRANSIENT = {"TimeoutException", "Timeout", "NetworkError", "RemoteProtocolError", "ChunkedEncodingError"}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_SHA1 = re.compile(r"[0-9a-f]{40}")
_HASH_CHUNK = 1 << 20


class HubUnavailableError(RuntimeError):
    """The hub cannot be reached (offline mode, no network, wrong endpoint): use an offline source."""


class HubDownloadError(RuntimeError):
    """The hub answered but the file could not be had: missing, gated, or corrupt after every retry."""


@dataclass(frozen=True)
class RemoteFile:
    """What the hub says a file is: the commit it resolved to, its size and its content hash (ETag)."""

    commit: str
    size: int | None
    etag: str


def hub_endpoint() -> str:
    """The endpoint in force: HF_ENDPOINT read now (tests set it after import), else the library's."""
    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


def _offline_mode() -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return constants.is_offline_mode() or flag in {"1", "ON", "YES", "TRUE"}


def _unavailable(endpoint: str, reason: str) -> HubUnavailableError:
    reason = " ".join(reason.split())[:200]
    return HubUnavailableError(
        f"cannot reach the Hugging Face hub at {endpoint} ({reason}): run with data=embedded or "
        f"data=local data.local.paths=[...] to train offline, or fix the connection "
        f"(network, HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN)"
    )


def _class_names(error: BaseException) -> set[str]:
    names: set[str] = set()
    seen = 0
    while error is not None and seen < 8:
        names.update(cls.__name__ for cls in type(error).__mro__)
        error = error.__cause__ or error.__context__
        seen += 1
    return names


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return error.response.status_code in _RETRY_STATUS
    if isinstance(error, OSError) and "Consistency check failed" in str(error):  # short body
        return True
    return bool(_class_names(error) & (_TRANSIENT | _UNREACHABLE))


def remote_file(
    repo_id: str, filename: str, *, repo_type: str = "dataset", revision: str = "main"
) -> RemoteFile:
    """One HEAD request: where `revision` points and the file's size and hash. Raises
    HubUnavailableError at once when the host cannot be reached, and the hub's own errors
    (HfHubHTTPError and subclasses) otherwise."""
    endpoint = hub_endpoint()
    if _offline_mode():
        raise _unavailable(endpoint, "HF_HUB_OFFLINE is set")
    url = hf_hub_url(repo_id, filename, repo_type=repo_type, revision=revision, endpoint=endpoint)
    # A short timeout: an unreachable host should cost seconds, not the library's retry loop.
    timeout = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or 5)
    try:
        meta = get_hf_file_metadata(url, timeout=timeout)
    except Exception as e:
        if _class_names(e) & _UNREACHABLE:
            raise _unavailable(endpoint, describe_error(e)) from None
        raise
    if not meta.commit_hash or not meta.etag:
        raise HubDownloadError(
            f"{endpoint} did not answer like a Hugging Face hub (no commit or ETag for {url})"
        )
    return RemoteFile(commit=meta.commit_hash, size=meta.size, etag=meta.etag)


def file_mismatch(path: Path, remote: RemoteFile) -> str | None:
    """Why `path` is not the file the hub describes, or None when size and hash agree.

    The ETag is the sha256 of an LFS/Xet file, or the git blob sha1 of a small file kept in git;
    any other ETag (a mirror's) leaves only the size to check.
    """
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        return f"size {size} != {remote.size}"
    etag = remote.etag.lower()
    if _SHA256.fullmatch(etag):
        digest = hashlib.sha256()
    elif _GIT_SHA1.fullmatch(etag):
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"blob {size}\0".encode())
    else:
        return None
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != etag:
        return f"checksum {digest.hexdigest()[:12]}… != {etag[:12]}…"
    return None


def _record_path(dest_dir: Path, filename: str) -> Path:
    return dest_dir / ".hub" / "verified" / f"{filename}.json"


def _read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json_atomic(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def is_verified(dest_dir: Path, filename: str, repo_id: str) -> bool:
    """True when `dest_dir/filename` was verified by an earlier run and still has that size."""
    dest = Path(dest_dir) / filename
    record = _read_record(_record_path(Path(dest_dir), filename))
    return (
        record is not None
        and dest.is_file()
        and record.get("repo_id") == repo_id
        and record.get("size") == dest.stat().st_size
    )


class _NoBar(tqdm):
    """Per-file byte bars switched off (download_shards shows one bar over shards instead)."""

    def __init__(self, *args, **kwargs):
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


_HAS_TQDM_CLASS = "tqdm_class" in inspect.signature(hf_hub_download).parameters


def fetch_file(
    repo_id: str,
    filename: str,
    *,
    repo_type: str = "dataset",
    revision: str = "main",
    dest_dir: Path | None = None,
    retries: int = 3,
    backoff_s: float = 1.0,
    show_progress: bool = True,
) -> Path:
    """Download one file and verify it against the hub's size and hash; return its local path.

    With `dest_dir` the file ends up at `dest_dir/filename` (renamed into place only once verified)
    and a verified file already there is returned without any network access. Without it the
    file stays in huggingface_hub's cache (HF_HOME). Up to `retries` further attempts follow a
    transient failure or a corrupt download, `backoff_s`·2^k seconds apart.
    """
    if dest_dir is not None:
        dest_dir = Path(dest_dir)
        if is_verified(dest_dir, filename, repo_id):
            return dest_dir / filename
    where = f"{repo_type} {repo_id}@{revision}"
    problem = "no attempt made"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            remote = remote_file(repo_id, filename, repo_type=repo_type, revision=revision)
            if dest_dir is not None:
                path = _fetch_to_dir(
                    repo_id, filename, repo_type, remote, dest_dir, attempt > 0, show_progress
                )
            else:
                path = _fetch_to_cache(repo_id, filename, repo_type, remote, attempt > 0, show_progress)
            if path is not None:
                return path
            problem = f"downloaded file did not match the hub's checksum ({filename})"
        except (HubUnavailableError, HubDownloadError):
            raise
        except GatedRepoError:
            raise HubDownloadError(
                f"{where} is gated: accept its terms on the hub and set HF_TOKEN"
            ) from None
        except RevisionNotFoundError:
            raise HubDownloadError(f"{where}: revision {revision!r} not found") from None
        except RepositoryNotFoundError:
            raise HubDownloadError(f"{where}: repository not found (or private: set HF_TOKEN)") from None
        except EntryNotFoundError as e:
            if isinstance(e, LocalEntryNotFoundError):  # a failed HEAD inside hf_hub_download: retry
                problem = describe_error(e)
                continue
            raise HubDownloadError(f"{where}: file {filename!r} not found") from None
        except Exception as e:
            if not _is_transient(e):
                raise
            problem = describe_error(e)
    raise HubDownloadError(f"{where}: {filename} failed after {retries + 1} attempts; last error: {problem}")


def _download_kwargs(show_progress: bool) -> dict:
    return {} if show_progress or not _HAS_TQDM_CLASS else {"tqdm_class": _NoBar}


def _fetch_to_dir(
    repo_id: str,
    filename: str,
    repo_type: str,
    remote: RemoteFile,
    dest_dir: Path,
    force: bool,
    show_progress: bool,
) -> Path | None:
    """Stage the file under dest_dir/.hub/staging, verify it, rename it into place and record it."""
    dest = dest_dir / filename
    record = {"repo_id": repo_id, "repo_type": repo_type, "commit": remote.commit, "etag": remote.etag}
    if dest.is_file() and file_mismatch(dest, remote) is None:  # a complete file from elsewhere
        _write_json_atomic(_record_path(dest_dir, filename), {**record, "size": dest.stat().st_size})
        return dest
    staging = dest_dir / ".hub" / "staging"
    staged = Path(
        hf_hub_download(
            repo_id,
            filename,
            repo_type=repo_type,
            revision=remote.commit,  # pinned: the bytes match the metadata just read
            local_dir=staging,
            endpoint=hub_endpoint(),
            force_download=force,
            **_download_kwargs(show_progress),
        )
    )
    if file_mismatch(staged, remote) is not None:
        staged.unlink(missing_ok=True)
        return None
    dest.parent.mkdir(parents=True, exist_ok=True)
    size = staged.stat().st_size
    os.replace(staged, dest)
    _write_json_atomic(_record_path(dest_dir, filename), {**record, "size": size})
    return dest


def _fetch_to_cache(
    repo_id: str, filename: str, repo_type: str, remote: RemoteFile, force: bool, show_progress: bool
) -> Path | None:
    """Download into huggingface_hub's cache and verify the cached blob; a bad blob is deleted."""
    path = Path(
        hf_hub_download(
            repo_id,
            filename,
            repo_type=repo_type,
            revision=remote.commit,
            endpoint=hub_endpoint(),
            force_download=force,
            **_download_kwargs(show_progress),
        )
    )
    if file_mismatch(path, remote) is None:
        return path
    blob = path.resolve()
    path.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)
    return None


def download_shards(
    repo_id: str,
    n_shards: int,
    dest_dir: Path,
    *,
    pattern: str = "shard_{index:05d}.parquet",
    revision: str = "main",
    repo_type: str = "dataset",
    workers: int = 4,
    retries: int = 3,
    backoff_s: float = 1.0,
) -> list[Path]:
    """Download shards 0..n_shards-1 (names from `pattern`) into `dest_dir`, `workers` at a time.

    Shards verified by an earlier run are skipped, so an interrupted download resumes where it
    stopped. Returns the shard paths in index order. The first failure cancels the shards not yet
    started and is raised (HubUnavailableError when the hub cannot be reached).
    """
    if n_shards < 1:
        raise ValueError(f"n_shards must be at least 1, got {n_shards}")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    names = [pattern.format(index=i) for i in range(n_shards)]
    todo = [name for name in names if not is_verified(dest_dir, name, repo_id)]
    if todo and _offline_mode():
        raise _unavailable(hub_endpoint(), "HF_HUB_OFFLINE is set")
    with (
        tqdm(total=n_shards, initial=n_shards - len(todo), unit="shard", desc=repo_id) as bar,
        ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="hub") as pool,
    ):
        pending = {
            pool.submit(
                fetch_file,
                repo_id,
                name,
                repo_type=repo_type,
                revision=revision,
                dest_dir=dest_dir,
                retries=retries,
                backoff_s=backoff_s,
                show_progress=False,
            )
            for name in todo
        }
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise future.exception()
                bar.update(1)
    return [dest_dir / name for name in names]
