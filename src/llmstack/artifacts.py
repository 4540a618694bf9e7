"""Files every part of llmstack writes: atomic writes, JSON, checksums, and provenance.

A leaf module (standard library + yaml only) so that library code and stage entry points alike can
write files without importing each other. Every stage folder `artifacts/<stage>/<key>/` ends with a
`meta.json` that `stage_meta` builds: what ran (stage, key, input keys), on what (git commit,
package versions, device), how long, the stage's summary metrics, and a sha256 of each declared
output, so the folder describes itself without its log. A later stage checks its inputs against
those checksums (`verify_input`) before loading them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

META_FILE = "meta.json"
STAGE_KEY = re.compile(r"[0-9a-f]{10}")  # the key folder of artifacts/<stage>/<key>/ (llmstack.plan)
PACKAGES = ("torch", "snakemake", "hydra-core", "omegaconf", "sentencepiece", "pyarrow", "huggingface_hub")


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path | str, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text())


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


_SHA256_SEEN: dict[tuple[str, int, int], str] = {}


def sha256_once(path: Path | str) -> str:
    """sha256_file, remembered for this process by (path, size, mtime): a multi-GB input that is both
    verified and fingerprinted (or opened by two helpers) is read once, and a rewritten file is read again."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA256_SEEN:
        _SHA256_SEEN[key] = sha256_file(path)
    return _SHA256_SEEN[key]


def git_commit() -> str:
    """The commit of the llmstack checkout this code runs from ('unknown' outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    from llmstack import __version__

    out = {"llmstack": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def provenance() -> dict[str, Any]:
    """Where and with what code a stage runs: printed first in its log, kept in its meta.json."""
    return {
        "git": git_commit(),
        "versions": package_versions(),
        "host": platform.node(),
        "platform": platform.platform(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def output_checksums(folder: Path, outputs: dict[str, str]) -> dict[str, dict[str, Any]]:
    """{output name: {file, bytes, sha256}} of the declared outputs that exist in `folder`."""
    out = {}
    for name, filename in sorted(outputs.items()):
        path = folder / filename
        if path.is_file():
            out[name] = {"file": filename, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return out


class IntegrityError(RuntimeError):
    """A file differs from the checksum its producer recorded, or cannot be checked; the message is one
    line that names the file and the command that rebuilds it."""


def stage_folder(path: Path | str) -> tuple[str, Path] | None:
    """(stage, folder) when `path` lies directly in a stage folder artifacts/<stage>/<key>/, else None."""
    folder = Path(path).parent
    if STAGE_KEY.fullmatch(folder.name) and folder.parent.parent.name == "artifacts":
        return folder.parent.name, folder
    return None


def rebuild_hint(stage: str, folder: Path) -> str:
    return f"rebuild it: snakemake --cores all --forcerun {stage} (or delete {folder}/ and rerun snakemake --cores all)"


def verify_input(name: str, path: Path | str) -> None:
    """Check an input file against the `outputs` checksums in the meta.json beside it.

    A file with no meta.json beside it is accepted when it was given by hand (outside any
    artifacts/<stage>/<key>/ folder); inside a stage folder a missing or unreadable meta.json, a file it
    does not list, a size or a sha256 that differs all raise IntegrityError. The size is checked first
    (a truncated file costs one stat); the sha256 is read once per process (sha256_once).
    """
    path = Path(path)
    meta_path = path.parent / META_FILE
    where = stage_folder(path)
    if path.name == META_FILE or not path.is_file():
        return  # nothing to check it against; a missing file is reported by whoever opens it
    if not meta_path.exists() and where is None:
        return
    stage = where[0] if where else "<stage>"

    def failure(kind: str, why: str) -> IntegrityError:
        return IntegrityError(f"{kind} input {name}={path} ({why}); " + rebuild_hint(stage, path.parent))

    try:
        meta = read_json(meta_path)
        stage = str(meta["stage"])
        entry = {o["file"]: o for o in meta["outputs"].values()}.get(path.name)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise failure("unverified", f"{meta_path} is missing or unreadable: {type(err).__name__}") from None
    if entry is None:
        raise failure("unverified", f"{meta_path} lists no output named {path.name}")
    size = path.stat().st_size
    if size != entry.get("bytes"):
        raise failure("corrupt", f"{size} bytes, {meta_path} records {entry.get('bytes')}")
    if sha256_once(path) != entry.get("sha256"):
        raise failure("corrupt", f"its sha256 differs from the one {meta_path} records")
