"""What every stage entry point shares: argument parsing, provenance, and atomic writes.

A rule runs `python -m llmstack.stages.<stage> <stage_dir> --config JSON [--execution JSON]
[--input name=path ...]`. `stage_main` parses that, writes `<stage_dir>/config.yaml` (the
stage's resolved slice, human-readable), prints provenance, and calls the stage's `run(ctx)`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass
class StageContext:
    stage: str
    dir: Path
    config: dict[str, Any]  # the stage's slice: {section: {...}, "inputs": {stage: key}}
    execution: dict[str, Any]  # device, processes...: never part of the stage key
    inputs: dict[str, Path]

    def section(self, name: str | None = None) -> dict[str, Any]:
        return self.config[name or self.stage]

    def fingerprint(self) -> str:
        """sha256 over the input files' contents: what step checkpoints must have been made from."""
        h = hashlib.sha256()
        for name, path in sorted(self.inputs.items()):
            h.update(name.encode())
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
        return h.hexdigest()


def git_commit() -> str:
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


def provenance() -> dict[str, Any]:
    from llmstack import __version__

    return {
        "llmstack": __version__,
        "git": git_commit(),
        "python": platform.python_version(),
        "host": platform.node(),
        "platform": platform.platform(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


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


def parse_args(stage: str, argv: list[str]) -> StageContext:
    ap = argparse.ArgumentParser(prog=f"python -m llmstack.stages.{stage}")
    ap.add_argument("dir", type=Path, help="the stage folder artifacts/<stage>/<key>")
    ap.add_argument("--config", required=True, help="the stage's config slice as JSON")
    ap.add_argument("--execution", default="{}", help="execution-only settings as JSON")
    ap.add_argument("--input", action="append", default=[], metavar="NAME=PATH")
    a = ap.parse_args(argv)
    inputs = {}
    for item in a.input:
        name, sep, path = item.partition("=")
        if not sep:
            ap.error(f"--input wants NAME=PATH, got {item!r}")
        inputs[name] = Path(path)
    return StageContext(stage, a.dir, json.loads(a.config), json.loads(a.execution), inputs)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def stage_main(stage: str, run: Callable[[StageContext], None], argv: list[str] | None = None) -> None:
    ctx = parse_args(stage, sys.argv[1:] if argv is None else argv)
    ctx.dir.mkdir(parents=True, exist_ok=True)
    if is_main_process():
        with atomic_path(ctx.dir / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(ctx.config, sort_keys=True))
        print(f"[{stage}] {json.dumps(provenance())}", flush=True)
        print(f"[{stage}] dir={ctx.dir} inputs={ {k: str(v) for k, v in ctx.inputs.items()} }", flush=True)
    t0 = time.time()
    run(ctx)
    if is_main_process():
        print(f"[{stage}] done in {time.time() - t0:.1f}s", flush=True)
