"""What every stage entry point shares: arguments, typed config, provenance, and meta.json.

A rule runs `python -m llmstack.stages.<stage> <stage_dir> --config JSON [--execution JSON]
[--input name=path ...]` (through llmstack.launch). `stage_main` parses that, rebuilds each config
section of the slice as its schema dataclass (execution settings merged back in), writes
`<stage_dir>/config.yaml`, prints provenance, checks every input against the checksums upstream
recorded (llmstack.artifacts.verify_input), calls the stage's `run(ctx)`, and on rank 0 writes
`<stage_dir>/meta.json` last: stage, key, input keys, provenance, device, seconds, the metrics `run`
returned and a checksum of every declared output. A corrupt input ends the stage with one line.

Housekeeping around it (rank 0, own folder only): temp files a killed attempt left are removed at
the start; the stage log keeps earlier attempts' lines across a rerun; once every declared output
is written, step checkpoints resume no longer needs are deleted.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from llmstack.artifacts import (
    META_FILE,
    IntegrityError,
    atomic_path,
    output_checksums,
    provenance,
    sha256_once,
    verify_input,
    write_json,
)
from llmstack.config import Config, LoopConfig, build_section
from llmstack.pipeline import Stage, stage

# A hard link to the stage log. Snakemake deletes a job's log before it reruns the job
# (snakemake/jobs.py, remove_existing_output), so the crashed attempt's lines live on only here.
EARLIER_LOG = ".earlier-attempts.log"


@dataclass
class StageContext:
    stage: Stage
    dir: Path
    slice: dict[str, Any]  # the stage's config slice as planned: {section: {...}, "inputs": {stage: key}}
    execution: dict[str, Any]  # {section: {execution-only settings}}: never part of the stage key
    inputs: dict[str, Path]
    sections: dict[str, Any] = field(default_factory=dict)  # section name -> its schema dataclass
    meta: dict[str, Any] = field(default_factory=dict)  # extra meta.json fields (device, dtype...)

    @property
    def cfg(self) -> Any:
        """The stage's own settings (its last config section) as a typed dataclass."""
        return self.sections[self.stage.sections[-1]]

    @property
    def name(self) -> str:
        return self.stage.name

    def print(self, message: str) -> None:
        print(f"[{self.name}] {message}", flush=True)

    def fingerprint(self) -> str:
        """sha256 over the input files' contents: what step checkpoints must have been made from.
        Reuses the hashes input verification read (sha256_once): each input is read once."""
        return sha256_file_set(self.inputs)


def sha256_file_set(files: dict[str, Path]) -> str:
    h = hashlib.sha256()
    for name, path in sorted(files.items()):
        h.update(name.encode())
        h.update(sha256_once(path).encode())
    return h.hexdigest()


def parse_args(name: str, argv: list[str]) -> StageContext:
    ap = argparse.ArgumentParser(prog=f"python -m llmstack.stages.{name}")
    ap.add_argument("dir", type=Path, help="the stage folder artifacts/<stage>/<key>")
    ap.add_argument("--config", required=True, help="the stage's config slice as JSON")
    ap.add_argument("--execution", default="{}", help="execution-only settings as JSON, by section")
    ap.add_argument("--input", action="append", default=[], metavar="NAME=PATH")
    a = ap.parse_args(argv)
    st = stage(name)
    inputs = {}
    for item in a.input:
        key, sep, path = item.partition("=")
        if not sep:
            ap.error(f"--input wants NAME=PATH, got {item!r}")
        inputs[key] = Path(path)
    missing = sorted(set(st.inputs) - set(inputs))
    if missing:
        ap.error(f"stage {name} needs --input for {missing}")
    ctx = StageContext(st, a.dir, json.loads(a.config), json.loads(a.execution), inputs)
    ctx.sections = {s: build_section(s, ctx.slice[s], ctx.execution.get(s, {})) for s in st.sections}
    return ctx


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def write_meta(ctx: StageContext, started: dict[str, Any], seconds: float, metrics: dict[str, Any]) -> None:
    body = {k: v for k, v in ctx.slice.items() if k != "inputs"}
    meta = {
        "stage": ctx.name,
        "key": ctx.dir.name,
        "inputs": ctx.slice.get("inputs", {}),
        "config": body,
        "execution": ctx.execution,
        **started,
        "device": "1xcpu",
        **ctx.meta,
        "seconds": round(seconds, 3),
        "metrics": metrics,
        "outputs": output_checksums(ctx.dir, ctx.stage.outputs),
    }
    write_json(ctx.dir / META_FILE, meta)


def remove_stale_temps(folder: Path) -> int:
    """Delete the `.*.tmp` files atomic_path leaves when its process is killed, in `folder` and its ckpt/."""
    removed = 0
    for sub in (folder, folder / "ckpt"):
        for path in sub.glob(".*.tmp") if sub.is_dir() else []:
            if path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def keep_log_across_attempts(ctx: StageContext) -> None:
    """Copy the earlier attempts' lines (kept by a hard link) into this attempt's log, then keep a link
    to this one. Only when stdout is the stage log `<dir>/<stage>.log`, as the rule's shell line makes it."""
    log, kept = ctx.dir / f"{ctx.name}.log", ctx.dir / EARLIER_LOG
    try:
        if not os.path.samestat(os.fstat(sys.stdout.fileno()), os.stat(log)):
            return
    except (OSError, ValueError, AttributeError):  # no log file, or stdout is not a file (tests, a shell)
        return
    # The same file when the log was truncated or appended to, not deleted: nothing to copy (and
    # copying a file into itself would never end).
    if kept.is_file() and not os.path.samefile(kept, log):
        ctx.print("==== earlier attempt(s) of this stage, kept across the rerun ====")
        with open(kept, "rb") as f:
            shutil.copyfileobj(f, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        print(f"\n[{ctx.name}] ==== this attempt ====", flush=True)
    try:
        link = kept.with_name(kept.name + ".new")
        link.unlink(missing_ok=True)
        os.link(log, link)
        os.replace(link, kept)
    except OSError as err:  # a file system without hard links: the next rerun starts a fresh log
        ctx.print(f"cannot keep this log for a rerun ({err})")


def prune_checkpoints(ctx: StageContext) -> None:
    """Once every declared output exists, keep only `keep_ckpts_after` step checkpoints (default none):
    a finished stage is never resumed, and a forced rerun with no checkpoint starts from scratch."""
    folder = ctx.dir / "ckpt"
    finished = all((ctx.dir / f).is_file() for f in ctx.stage.declared.values())
    if not isinstance(ctx.cfg, LoopConfig) or not folder.is_dir() or not finished:
        return
    from llmstack.checkpoint import prune_steps  # torch: paid only by stages that checkpoint

    prune_steps(folder, ctx.cfg.keep_ckpts_after)


class ReadRecorder:
    """Records which schema fields code reads: for the test that no setting is silently ignored.

    Set LLMSTACK_RECORD_READS to a folder and each stage writes `<stage>-<key>.json` listing the
    `Class.field` names it read (stage_main). Lives here, beside its only user."""

    def __init__(self) -> None:
        self.reads: set[str] = set()
        self._classes = [c for c in _schema_classes(Config) if "__getattribute__" not in vars(c)]

    def __enter__(self) -> ReadRecorder:
        reads = self.reads

        def getattribute(obj: Any, attr: str) -> Any:
            names = object.__getattribute__(obj, "__dataclass_fields__")
            if attr in names:
                reads.add(f"{type(obj).__name__}.{attr}")
            return object.__getattribute__(obj, attr)

        for cls in self._classes:
            cls.__getattribute__ = getattribute
        return self

    def __exit__(self, *exc: Any) -> None:
        for cls in self._classes:
            del cls.__getattribute__


def _schema_classes(cls: type) -> list[type]:
    out = [cls]
    for f in fields(cls):
        if is_dataclass(f.default_factory):
            out += [c for c in _schema_classes(f.default_factory) if c not in out]
    return out


def stage_main(name: str, run: Callable[[StageContext], dict[str, Any] | None], argv: list[str] | None = None) -> None:
    ctx = parse_args(name, sys.argv[1:] if argv is None else argv)
    ctx.dir.mkdir(parents=True, exist_ok=True)
    started = provenance()
    if is_main_process():
        keep_log_across_attempts(ctx)
        if stale := remove_stale_temps(ctx.dir):
            ctx.print(f"removed {stale} stale temp file(s) a killed attempt left")
        with atomic_path(ctx.dir / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(ctx.slice, sort_keys=True))
        print(f"[{name}] {json.dumps(started)}", flush=True)
        print(f"[{name}] dir={ctx.dir} inputs={ {k: str(v) for k, v in ctx.inputs.items()} }", flush=True)
    t0 = time.time()
    record_to = os.environ.get("LLMSTACK_RECORD_READS")
    try:
        for input_name, path in sorted(ctx.inputs.items()):
            verify_input(input_name, path)
        with ReadRecorder() if record_to else contextlib.nullcontext() as recorder:
            metrics = run(ctx)
    except IntegrityError as err:  # one line naming the file and the rebuild command, no traceback
        sys.exit(f"[{name}] {err}")
    seconds = time.time() - t0
    if record_to and is_main_process():
        write_json(Path(record_to) / f"{name}-{ctx.dir.name}.json", sorted(recorder.reads))
    if is_main_process():
        write_meta(ctx, started, seconds, metrics or {})
        prune_checkpoints(ctx)
        (ctx.dir / EARLIER_LOG).unlink(missing_ok=True)  # finished: a forced rerun starts a fresh log
        print(f"[{name}] done in {seconds:.1f}s", flush=True)
