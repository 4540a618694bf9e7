"""The report card: how the run ran (environment, stages, time and cost, data, config), plus the
model results of llmstack.report.results, written as runs/<run>/report.md beside its PNGs.

Everything about a stage comes from its folder's meta.json (provenance, device, seconds, config)
and its declared result file; logs are for people and are never read. Prices come from the
`report` config section the caller passes (a ReportConfig), so `report.*` overrides reach them.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path

import yaml

from llmstack.artifacts import git_commit
from llmstack.config import ReportConfig
from llmstack.pipeline import STAGES
from llmstack.report.gather import BASE_INPUTS, TRAINED, RunResults, StageResult, load_run
from llmstack.report.markdown import DASH, duration, fenced, fmt, money, table, write_text
from llmstack.report.plots import LOSS_PNG, REWARD_PNG, plot_rewards, plot_training
from llmstack.report.results import eval_section, rl_section, samples_section, training_section

# environment rows: (label, path into meta.json)
PROVENANCE = (
    ("llmstack", ("versions", "llmstack")),
    ("git", ("git",)),
    ("python", ("versions", "python")),
    ("torch", ("versions", "torch")),
    ("host", ("host",)),
    ("platform", ("platform",)),
)


# ---------------------------------------------------------------------------------- environment


def _command(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return ""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, str]:
    """Hardware and software of the machine writing the report (meta.json records each stage's)."""
    try:
        mem = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        mem = DASH
    gpus: dict[str, int] = {}
    for line in _command(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"]).splitlines():
        if line.strip():
            gpus[line.strip()] = gpus.get(line.strip(), 0) + 1
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    return {
        "CPU": f"{_cpu_name()} ({os.cpu_count()} logical cores)",
        "memory": mem,
        "GPUs": ", ".join(f"{n} × {name}" for name, n in gpus.items()) or "none found (nvidia-smi)",
        "torch": torch_version,
        "python": platform.python_version(),
        "git commit": git_commit(),
    }


def _lookup(meta: dict, path: tuple[str, ...]) -> str | None:
    for key in path:
        if not isinstance(meta, dict) or key not in meta:
            return None
        meta = meta[key]
    return str(meta)


def _distinct(run: RunResults, path: tuple[str, ...]) -> str:
    """One provenance field across stages: the value, or each value with the stages that had it."""
    seen: dict[str, list[str]] = {}
    for name, st in run.stages.items():
        if (value := _lookup(st.meta or {}, path)) is not None:
            seen.setdefault(value, []).append(name)
    if len(seen) <= 1:
        return next(iter(seen), DASH)
    return "; ".join(f"{v} ({', '.join(names)})" for v, names in seen.items())


def environment_section(run: RunResults) -> list[str]:
    rows = [[f"stages: {label}", _distinct(run, path)] for label, path in PROVENANCE]
    rows += [[f"report machine: {k}", v] for k, v in machine_info().items()]
    return [
        "## Environment",
        "",
        *table(["", "value"], rows, text_columns=2),
        "",
        "Stage rows come from each stage's meta.json; hardware rows describe the machine that "
        "wrote this report (the same machine when the workflow runs locally).",
        "",
    ]


# -------------------------------------------------------------------------------- time and cost


def parse_device(text: object) -> tuple[int, str] | None:
    """(count, type) of a meta.json device string "<count>x<type>" ("8xcuda"), None if it is not one."""
    count, sep, kind = str(text).partition("x")
    return (int(count), kind) if sep and count.isdigit() and kind else None


def stage_device(run: RunResults, st: StageResult) -> tuple[int, str, bool]:
    """(device count, device type, recorded?) of a finished stage. One whose meta.json names no
    device is assumed to have run on one device of the type the training stages used."""
    if device := parse_device(st.info("device")):
        return (*device, True)
    for name in TRAINED:
        if name in run.stages and (device := parse_device(run.stages[name].info("device"))):
            return 1, device[1], False
    return 1, "cpu", False


def stage_cost(count: int, kind: str, seconds: float, gpu_price: float, cpu_price: float) -> float:
    """GPU stages pay per GPU-hour; CPU stages pay per machine-hour (gloo processes share one)."""
    hours = seconds / 3600
    return hours * count * gpu_price if kind == "cuda" else hours * cpu_price


def _stage_row(run: RunResults, st: StageResult, prices: ReportConfig) -> tuple[list[str], float, float, bool]:
    """(table row, seconds, cost, device recorded?) of one stage; an unfinished or untimed one costs nothing."""
    if not st.done:
        return [st.name, f"`{st.folder}`", "not finished", DASH, DASH, DASH, DASH], 0.0, 0.0, True
    count, kind, recorded = stage_device(run, st)
    seconds = st.info("seconds")
    cost = None if seconds is None else stage_cost(count, kind, seconds, prices.gpu_hour_price, prices.cpu_hour_price)
    row = [
        st.name,
        f"`{st.folder}`",
        "done",
        st.info("started", DASH),
        duration(seconds),
        f"{count}x{kind}" + ("" if recorded else " †"),
        DASH if cost is None else money(cost),
    ]
    return row, seconds or 0.0, cost or 0.0, recorded


def run_totals(run: RunResults, prices: ReportConfig) -> tuple[float, float]:
    """(seconds, USD) of a run's finished stages."""
    rows = [_stage_row(run, st, prices) for st in run.stages.values()]
    return sum(r[1] for r in rows), sum(r[2] for r in rows)


def stages_section(run: RunResults, prices: ReportConfig) -> list[str]:
    stages = [_stage_row(run, st, prices) for st in run.stages.values()]
    total_s, total_cost = sum(r[1] for r in stages), sum(r[2] for r in stages)
    rows = [r[0] for r in stages] + [["**total**", "", "", "", duration(total_s), "", money(total_cost)]]
    header = ["stage", "folder", "status", "started", "time", "device", "est. cost"]
    out = ["## Stages", "", *table(header, rows, text_columns=4), ""]
    out.append(
        f"Cost = hours × ${prices.gpu_hour_price:.2f} per GPU-hour on CUDA, × ${prices.cpu_hour_price:.2f} per "
        "machine-hour on CPU (report.gpu_hour_price, report.cpu_hour_price). Time is the wall time of the "
        "attempt that finished, from the stage's meta.json; stages shared with other runs (cached) count in each run."
    )
    if not all(r[3] for r in stages):
        out.append("† not recorded by the stage; assumed one device of the training stages' type.")
    return [*out, ""]


# ---------------------------------------------------------------------------------- data, config


def _manifest_lines(manifest: dict) -> list[str]:
    source = manifest.get("source") or {}
    detail = ", ".join(f"{k}={v}" for k, v in source.items() if k != "kind")
    val = manifest.get("val") or {}
    return [
        f"- source: **{source.get('kind', DASH)}**" + (f" ({detail})" if detail else ""),
        f"- training text: {manifest.get('rows', 0):,} documents, {manifest.get('text_bytes', 0) / 1e6:,.1f} MB "
        f"in {len(manifest.get('shards', []))} shards; validation: {val.get('rows', 0):,} documents, "
        f"{val.get('text_bytes', 0) / 1e6:,.2f} MB",
    ]


def _tokenizer_lines(stats: dict) -> list[str]:
    return [
        f"- tokenizer: vocabulary {fmt(stats.get('vocab_size'), ',.0f')}, "
        f"{fmt(stats.get('bytes_per_token'))} bytes/token on the validation text"
    ]


# bullets per kind of result (the stage table's `result` output name) of what pretraining reads
INPUT_LINES = {"manifest": _manifest_lines, "stats": _tokenizer_lines}


def data_section(run: RunResults) -> list[str]:
    """Bullets from what pretraining reads: the data stage's manifest, the tokenizer's stats."""
    out = ["## Data and tokenizer", ""]
    for name in dict.fromkeys(BASE_INPUTS.values()):
        render = INPUT_LINES.get(STAGES[name].result)
        if render:
            result = run.result(name)
            out += render(result) if result else [f"- {name}: {DASH} (not finished)"]
    return [*out, ""]


def config_section(run: RunResults) -> list[str]:
    parts = [
        f"# {name}: {st.folder}\n{yaml.safe_dump(st.config, sort_keys=True).rstrip()}"
        for name, st in run.stages.items()
        if st.config
    ]
    if not parts:
        return ["## Config", "", f"{DASH} (no stage has finished yet)", ""]
    return [
        "## Config",
        "",
        "<details><summary>Config slice of each stage (from its meta.json)</summary>",
        "",
        *fenced("\n\n".join(parts), "yaml"),
        "",
        "</details>",
        "",
    ]


# ---------------------------------------------------------------------------------- the card


def render_report(run: RunResults, prices: ReportConfig, loss_png: bool, reward_png: bool) -> str:
    from llmstack import __version__

    starts = sorted(str(st.info("started")) for st in run.stages.values() if st.info("started"))
    head = [
        f"# llmstack report: {run.name}",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by llmstack {__version__}"
        + (f"; first stage started {starts[0]}." if starts else "."),
        "",
    ]
    sections = (
        head,
        environment_section(run),
        stages_section(run, prices),
        data_section(run),
        training_section(run, LOSS_PNG if loss_png else None),
        eval_section(run),
        rl_section(run, REWARD_PNG if reward_png else None),
        samples_section(run),
        config_section(run),
    )
    return "\n".join(line for section in sections for line in section).rstrip() + "\n"


def write_report(run_dir: Path | str, report: ReportConfig | None = None) -> Path:
    """runs/<run>/report.md plus its PNGs (PNGs first, so a report never links a missing plot)."""
    run = load_run(run_dir)
    loss_png = plot_training(run, run.dir / LOSS_PNG)
    reward_png = plot_rewards(run, run.dir / REWARD_PNG)
    out = run.dir / "report.md"
    write_text(out, render_report(run, report or ReportConfig(), loss_png, reward_png))
    return out
