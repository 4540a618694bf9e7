"""A fake Hugging Face hub on 127.0.0.1, so download code is tested for real without a network.

    from hubserver import FakeHub, fake_hub_fixture  # noqa: F401  (importing it provides `fake_hub`)

    def test_x(fake_hub):
        fake_hub.add_file("me/data", "shard_00000.parquet", payload)
        fetch_file("me/data", "shard_00000.parquet", dest_dir=tmp_path)

It speaks the part of the hub protocol huggingface_hub's downloads use, as the real hub does:
- HEAD/GET {endpoint}/{datasets/|spaces/|}{owner}/{name}/resolve/{revision}/{path}, revision
  "main" or FakeHub.COMMIT, answered with X-Repo-Commit;
- an LFS-like file (the default) is a 302 to a "CDN" URL on another host name (localhost instead
  of 127.0.0.1) carrying X-Linked-Etag (its sha256) and X-Linked-Size, so the client takes the
  metadata from the redirect and fetches the bytes from the CDN as it does with the real hub;
- a git-stored file (lfs=False) is served directly with ETag = its git blob sha1;
- unknown repo / revision / file: 404 with X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound.
Fault injection per file: `fail_first[path] = k` answers the next k requests touching that file
with 500, `fail_body_first[path] = k` the next k requests for its bytes (not the HEADs);
`corrupt_first[path] = k` serves k bodies with one byte flipped (same length; -1 = always).
`requests` logs (method, path-of-file) for every request that touched a file.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest


@dataclass
class HubFile:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_sha1(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


class FakeHub:
    COMMIT = "c0ffee0000000000000000000000000000000001"

    def __init__(self, cdn_host: str = "localhost"):
        self.files: dict[tuple[str, str], HubFile] = {}  # (repo key "datasets/owner/name", path)
        self.fail_first: dict[str, int] = {}
        self.fail_body_first: dict[str, int] = {}
        self.corrupt_first: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        self.cdn_host = cdn_host
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- content -------------------------------------------------------------------------------
    @staticmethod
    def _repo_key(repo_id: str, repo_type: str) -> str:
        return {"dataset": "datasets/", "space": "spaces/", "model": ""}[repo_type] + repo_id

    def add_file(self, repo_id: str, path: str, data: bytes, *, repo_type: str = "dataset", lfs: bool = True):
        self.files[(self._repo_key(repo_id, repo_type), path)] = HubFile(bytes(data), lfs)

    def add_folder(self, repo_id: str, folder: Path, *, repo_type: str = "dataset", lfs: bool = True):
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                self.add_file(
                    repo_id, p.relative_to(folder).as_posix(), p.read_bytes(), repo_type=repo_type, lfs=lfs
                )

    def count(self, path: str, method: str | None = None) -> int:
        """Requests so far that touched `path` (optionally of one method)."""
        with self._lock:
            return sum(1 for m, p in self.requests if p == path and method in (None, m))

    def body_downloads(self, path: str) -> int:
        """GETs that returned (or tried to return) the bytes of `path`."""
        with self._lock:
            return sum(1 for m, p in self.requests if p == path and m == "GET-BODY")

    # --- server --------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "FakeHub is not started"
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- request logic (called from handler threads) -------------------------------------------
    def _should_fail(self, path: str, body: bool) -> bool:
        with self._lock:
            for counters in (self.fail_first, self.fail_body_first) if body else (self.fail_first,):
                left = counters.get(path, 0)
                if left > 0:
                    counters[path] = left - 1
                    return True
            return False

    def _body(self, path: str, f: HubFile) -> bytes:
        with self._lock:
            self.requests.append(("GET-BODY", path))
            left = self.corrupt_first.get(path, 0)
            if left == 0 or not f.data:
                return f.data
            if left > 0:
                self.corrupt_first[path] = left - 1
        data = bytearray(f.data)
        data[len(data) // 2] ^= 0xFF
        return bytes(data)

    def _log(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))


def _make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as huggingface_hub's connection pool expects

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        def _send(
            self,
            status: int,
            headers: dict[str, str],
            body: bytes = b"",
            head: bool = False,
            length: int = -1,
        ) -> None:
            """Answer; a HEAD sends no body but may advertise the length a GET would have (`length`)."""
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(length if length >= 0 else len(body)))
            self.end_headers()
            if not head and body:
                self.wfile.write(body)

        def _error(self, status: int, code: str | None = None, head: bool = False) -> None:
            headers = {"X-Repo-Commit": hub.COMMIT} if code == "EntryNotFound" else {}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, headers, b"" if head else f'{{"error": "{code or status}"}}'.encode(), head)

        def _route(self, head: bool) -> None:
            parts = [unquote(p) for p in urlsplit(self.path).path.split("/")[1:]]
            if parts[:1] == ["cdn"] and len(parts) >= 3:
                return self._cdn(parts[1], "/".join(parts[2:]), head)
            prefix = parts[0] + "/" if parts[:1] in (["datasets"], ["spaces"]) else ""
            rest = parts[1:] if prefix else parts
            if len(rest) < 5 or rest[2] != "resolve":
                return self._error(404, head=head)
            repo_key = prefix + "/".join(rest[:2])
            revision, path = rest[3], "/".join(rest[4:])
            if not any(key == repo_key for key, _ in hub.files):
                return self._error(404, "RepoNotFound", head)
            if revision not in ("main", hub.COMMIT):
                return self._error(404, "RevisionNotFound", head)
            f = hub.files.get((repo_key, path))
            if f is None:
                return self._error(404, "EntryNotFound", head)
            hub._log(self.command, path)
            if hub._should_fail(path, body=not head and not f.lfs):
                return self._error(500, head=head)
            common = {"X-Repo-Commit": hub.COMMIT}
            if f.lfs:
                cdn = f"http://{hub.cdn_host}:{hub.port}/cdn/{f.sha256}/{quote(path)}"
                headers = {
                    **common,
                    "Location": cdn,
                    "X-Linked-Etag": f'"{f.sha256}"',
                    "X-Linked-Size": str(len(f.data)),
                    "ETag": f'W/"{f.git_sha1[:20]}"',  # the pointer's etag; clients must prefer X-Linked-Etag
                }
                return self._send(302, headers, head=head)
            headers = {**common, "ETag": f'"{f.git_sha1}"', "Content-Type": "application/octet-stream"}
            body = b"" if head else hub._body(path, f)
            return self._send(200, headers, body, head, length=len(f.data))

        def _cdn(self, sha256: str, path: str, head: bool) -> None:
            f = next((f for (_, p), f in hub.files.items() if p == path and f.sha256 == sha256), None)
            if f is None:
                return self._send(404, {}, b"no such blob", head)
            hub._log(f"CDN-{self.command}", path)
            if hub._should_fail(path, body=not head):
                return self._error(500, head=head)
            headers = {"ETag": f'"{f.sha256}"', "Content-Type": "application/octet-stream"}
            body = b"" if head else hub._body(path, f)
            return self._send(200, headers, body, head, length=len(f.data))

    return Handler


def use_fake_hub(monkeypatch: pytest.MonkeyPatch, hub: FakeHub, hf_home: Path) -> None:
    """Point huggingface_hub at `hub` with a private cache, for the rest of one test."""
    use_hub_endpoint(monkeypatch, hub.endpoint, hf_home)


def use_hub_endpoint(monkeypatch: pytest.MonkeyPatch, endpoint: str, hf_home: Path) -> None:
    """Point huggingface_hub at `endpoint` (any URL, e.g. a closed port) with a private cache."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    # huggingface_hub reads these once at import: patch the module constants as well.
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(name="fake_hub")
def fake_hub_fixture(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """A started FakeHub that huggingface_hub (via HF_ENDPOINT) talks to during this test."""
    with FakeHub() as hub:
        use_fake_hub(monkeypatch, hub, tmp_path / "hf_home")
        yield hub
