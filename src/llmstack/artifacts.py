"""Files every part of llmstack writes: atomic writes, JSON, checksums, and provenance.

A leaf module (standard library + yaml only) so that library code and stage entry points alike can
write files without importing each other. Every stage folder `artifacts/<stage>/<key>/` ends with a
`meta.json` that `stage_meta` builds: what ran (stage, key, input keys), on what (git commit,
package versions, device), how long, the stage's summary metrics, and a sha256 of each declared
output, so the folder describes itself without its log.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

META_FILE = "meta.json"
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
