"""Plain HTTP(S) downloads with a pinned checksum: resumable, retried, atomic, with a progress bar.

    path = download_url(url, cache / "eval_bundle.zip", sha256)

For files that live outside the Hugging Face hub (the CORE eval bundle); hub files go through
llmstack.data.hub.
"""

from __future__ import annotations

import http.client
import os
import time
from pathlib import Path

from tqdm.auto import tqdm

from llmstack.artifacts import sha256_file

_CHUNK = 1 << 20


def describe_error(error: BaseException) -> str:
    """An exception as one short line (type and first line of its message), for retry messages."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first_line}"[:300]


class DownloadError(RuntimeError):
    """A plain URL could not be fetched, or its bytes did not match the pinned checksum."""


def _fetch_part(url: str, part: Path, timeout: float, show_progress: bool) -> None:
    """Append the rest of `url` to `part`, asking only for the missing bytes (HTTP Range)."""
    import urllib.error
    import urllib.request

    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the part is already whole
            return
        raise
    with response:
        if have and response.status != 206:  # the server ignored Range: start over
            have = 0
        total = response.headers.get("Content-Length")
        total = int(total) + have if total is not None else None
        with (
            open(part, "ab" if have else "wb") as f,
            tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=part.name[:-5],
                 disable=not show_progress) as bar,
        ):  # fmt: skip
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size < total:  # a dropped stream: resume on retry
        raise ConnectionError(f"stream ended at {part.stat().st_size} of {total} bytes")


def download_url(
    url: str,
    dest: Path,
    sha256: str,
    *,
    timeout: float = 30.0,
    retries: int = 3,
    backoff_s: float = 1.0,
    show_progress: bool = True,
) -> Path:
    """Download `url` to `dest` once its sha256 matches; return `dest`.

    Bytes land in `dest.part` (kept across failures and runs, so a rerun resumes with an HTTP
    Range request) and get the final name only when verified. A wrong checksum deletes the part
    and raises DownloadError in one line; network failures are retried `retries` times."""
    dest = Path(dest)
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    problem = "no attempt made"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            _fetch_part(url, part, timeout, show_progress)
            break
        except (OSError, ValueError, http.client.HTTPException) as e:  # refused, reset, timeout, cut short
            problem = describe_error(e)
    else:
        raise DownloadError(f"{url}: failed after {retries + 1} attempts; last error: {problem}")
    got = sha256_file(part)
    if got != sha256:
        part.unlink(missing_ok=True)  # a resumed part built on bad bytes must not be reused
        raise DownloadError(f"{url}: sha256 {got[:12]}… != expected {sha256[:12]}…; deleted, rerun to retry")
    os.replace(part, dest)
    return dest
