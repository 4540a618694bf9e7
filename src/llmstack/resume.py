"""Resume the run that crashed: record each run's invocation when it starts, replay it later.

    snakemake --cores all --config run=big overrides="model.depth=12"   # crashes / is killed
    llmstack resume                   # the same --config again, after unlocking the folder
    llmstack resume big -- --cores 8  # a named run, extra arguments passed on to snakemake

The Snakefile's `onstart:` handler calls `record_invocation`; Snakemake runs that handler only for a
real execution (not -n, --lint, --dag, --unlock, nor when nothing is to be done), so a dry run never
replaces the record of the run that really started. The files are neither inputs nor outputs of
any rule, so they never trigger a rerun.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from llmstack.artifacts import read_json, write_json

CONFIG_KEYS = ("preset", "run", "overrides", "sweep")  # the Snakefile's --config keys (README)
LAST = Path("runs") / ".last-invocation.json"
# Snakemake invocations that take no lock: a live one does not make unlocking unsafe.
NO_LOCK_FLAGS = {"-n", "--dry-run", "--dryrun", "--unlock", "--lint", "--dag", "--rulegraph",
                 "--filegraph", "--nolock", "--summary", "--detailed-summary", "-h", "--help"}  # fmt: skip
DRY_FLAGS = {"-n", "--dry-run", "--dryrun"}


class ResumeError(RuntimeError):
    """Resume cannot go on; the message is one line that names the fix."""


def record_invocation(given: dict[str, Any], run_names: list[str], snakefile: str | Path) -> None:
    """Write runs/<run>/invocation.json for every run of this invocation and runs/.last-invocation.json
    (relative to the working folder, where Snakemake has already moved), each atomically. `given`:
    Snakemake's --config dict."""
    invocation = {k: str(given[k]) for k in CONFIG_KEYS if given.get(k) not in (None, "")}
    record = {"config": invocation, "snakefile": str(Path(snakefile).resolve()), "runs": run_names}
    for name in run_names:
        write_json(Path("runs") / name / "invocation.json", record)
    write_json(LAST, {**record, "run": run_names[0]})


def load_invocation(folder: Path, run: str | None) -> dict[str, Any] | None:
    """The recorded invocation of `run` (default: the last run started), or None when no run
    ever recorded one (a folder older than this feature: resume replays no --config)."""
    path = folder / (LAST if run is None else Path("runs") / run / "invocation.json")
    if not path.is_file():
        if run is None:
            return None
        known = sorted(p.parent.name for p in (folder / "runs").glob("*/invocation.json"))
        hint = f"runs started here: {', '.join(known)}" if known else "no run has started in this folder"
        raise ResumeError(f"run {run!r} has no recorded invocation ({path} is missing); {hint}")
    try:
        record = read_json(path)
        if not isinstance(record.get("config"), dict):
            raise ValueError("no 'config' mapping")
    except (OSError, ValueError, AttributeError) as err:
        raise ResumeError(f"unreadable invocation record {path} ({err}); start the run again with snakemake") from None
    return record


def _snakemake_argv(argv: list[str]) -> list[str] | None:
    """The arguments after `snakemake` if this command line runs Snakemake (its console script, or
    `python -m snakemake`), else None."""
    for i, word in enumerate(argv[:3]):
        if os.path.basename(word) == "snakemake" and (i < 2 or argv[i - 1] == "-m"):
            return argv[i + 1 :]
    return None


def _option(args: list[str], *names: str) -> str | None:
    """The value of the last `--name V` / `--name=V` / `-d V` among args, else None."""
    value = None
    for i, word in enumerate(args):
        for name in names:
            if word == name and i + 1 < len(args):
                value = args[i + 1]
            elif word.startswith(name + "=") and name.startswith("--"):
                value = word.split("=", 1)[1]
    return value


def live_snakemakes(folder: Path) -> list[int]:
    """PIDs of running Snakemake processes (that take a lock) working in `folder`: their current
    folder (Snakemake moves into its -d workdir) or their -d workdir is `folder`."""
    folder = folder.resolve()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = [w.decode(errors="replace") for w in (proc / "cmdline").read_bytes().split(b"\0") if w]
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:  # gone meanwhile, or another user's process
            continue
        args = _snakemake_argv(argv)
        if args is None or NO_LOCK_FLAGS & set(args):
            continue
        workdir = _option(args, "-d", "--directory")
        places = {cwd.resolve()} | ({(cwd / workdir).resolve()} if workdir else set())
        if folder in places:
            pids.append(int(proc.name))
    return sorted(pids)


def _merge_config(recorded: dict[str, str], extra: list[str]) -> tuple[list[str], list[str]]:
    """(the --config words: recorded keys, then any the user passed; the rest of `extra`).
    Snakemake keeps only the last --config, so the user's keys are merged into one."""
    words = dict(recorded)
    rest: list[str] = []
    i = 0
    while i < len(extra):
        if extra[i] in ("--config", "-C"):
            i += 1
            while i < len(extra) and not extra[i].startswith("-"):
                key, _, value = extra[i].partition("=")
                words[key] = value
                i += 1
        else:
            rest.append(extra[i])
            i += 1
    return [f"{k}={v}" for k, v in words.items()], rest


def resume_commands(record: dict[str, Any] | None, extra: list[str]) -> tuple[list[str] | None, list[str]]:
    """(the unlock command or None for a dry run, the rerun command) for a recorded invocation."""
    config, rest = _merge_config((record or {}).get("config", {}), extra)
    base = [sys.executable, "-m", "snakemake"]
    snakefile = (record or {}).get("snakefile")
    if snakefile and Path(snakefile).is_file() and _option(rest, "-s", "--snakefile") is None:
        base += ["-s", snakefile]
    tail = rest + (["--config", *config] if config else [])  # last: --config takes every word after it
    rerun = [*base, "--cores", "all", "--rerun-incomplete", *tail]
    # A dry run changes nothing, the lock included (and Snakemake's -n needs no unlocked folder).
    unlock = None if DRY_FLAGS & set(rest) else [*base, "--unlock", *tail]
    return unlock, rerun


def resume(run: str | None, extra: list[str]) -> int:
    """`llmstack resume`: refuse beside a live Snakemake, unlock, rerun the recorded invocation."""
    workdir = _option(extra, "-d", "--directory")
    folder = Path(workdir) if workdir else Path.cwd()
    try:
        if pids := live_snakemakes(folder):
            raise ResumeError(
                f"snakemake is still running in {folder.resolve()} (PID {', '.join(map(str, pids))}); "
                f"wait for it to finish or stop it (kill {pids[0]}) before resuming"
            )
        record = load_invocation(folder, run)
    except ResumeError as err:
        print(f"llmstack resume: {err}", file=sys.stderr)
        return 2
    if record is None:
        print(f"llmstack resume: no run recorded in {folder / LAST}; rerunning without --config", file=sys.stderr)
    unlock, rerun = resume_commands(record, extra)
    if record is not None:
        print(f"llmstack resume: run {record.get('run') or run}: {' '.join(rerun[3:])}", file=sys.stderr)
    if unlock is not None:
        done = subprocess.run(unlock, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            return done.returncode
    return subprocess.call(rerun)
