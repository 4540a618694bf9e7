"""Comparing runs: runs/<sweep>/sweep.md (one row per run) and sweep.png; and `regenerate`, which
rewrites every report.md and sweep.md under runs/ from what the stage folders hold.

What a run's row says varied comes from comparing the runs' stage configs (each meta.json's
`config`, dotted: `model.depth`), never from run names: a setting varies when its value differs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from llmstack.artifacts import read_json
from llmstack.config import ReportConfig
from llmstack.report.gather import (
    BASE_EVAL,
    BASE_MODEL,
    CHAT_EVALS,
    RunResults,
    base_bpb,
    eval_tasks,
    final_chat_model,
    load_run,
    run_settings,
)
from llmstack.report.markdown import DASH, fmt, millions, money, num, table, write_text
from llmstack.report.plots import save_png
from llmstack.report.sections import run_totals, write_report

SWEEP_PNG, SWEEP_JSON = "sweep.png", "sweep.json"
DEPTH_KEY = "model.depth"  # the one dial (llmstack.config): a sweep over it gets a real x axis


def varied_settings(runs: list[RunResults], limit: int = 3) -> list[dict[str, str]]:
    """{dotted key: value} per run of the settings that differ between the runs' configs.

    Only keys every run has count (a stage one run has not finished is not a setting that varies).
    A key that varies in lockstep with an earlier one (`model.n_embd` with `model.depth`, derived
    from it) is left out, so the label names the dials rather than everything they imply."""
    flats = [run_settings(r) for r in runs]
    common = set.intersection(*(set(f) for f in flats))
    keys, patterns = [], set()
    for key in flats[0]:  # DAG order, then the order of each stage's config
        if key not in common:
            continue
        values = [json.dumps(f[key], sort_keys=True) for f in flats]
        pattern = tuple(values.index(v) for v in values)  # which runs share a value
        if len(set(values)) > 1 and pattern not in patterns:
            patterns.add(pattern)
            keys.append(key)
    return [{k: str(f[k]) for k in keys[:limit]} for f in flats]


def plot_sweep(
    labels: list[str], depths: list[int] | None, bpb: list[Any], chatcore: list[Any], models: list[str], path: Path
) -> None:
    """Val bpb and ChatCORE against depth (a depth sweep) or per run; ChatCORE points name their model."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    axes = fig.subplots(1, 2)
    xs = depths if depths else list(range(len(labels)))
    for ax, values, title in ((axes[0], bpb, "base val bits per byte"), (axes[1], chatcore, "ChatCORE")):
        pts = sorted((x, float(v), m) for x, v, m in zip(xs, values, models, strict=True) if num(v) is not None)
        if pts:  # a line only along a real axis; separate runs are separate points
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", linestyle="-" if depths else "none")
        ax.margins(x=0.1)
        if ax is axes[1]:  # runs may stop at different stages: say which model each point is
            for x, v, m in pts:
                ax.annotate(m, (x, v), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_title(title)
        ax.set_xlabel(DEPTH_KEY if depths else "run")
        ax.set_xticks(xs, [str(d) for d in xs] if depths else labels, **({} if depths else {"rotation": 20}))
        ax.grid(alpha=0.3)
    save_png(fig, path)


def _sweep_row(run: RunResults, label: str, tasks: list[str], out: Path, prices: ReportConfig) -> list[str]:
    model = final_chat_model(run)
    ev = run.result(CHAT_EVALS[model]) if model else {}
    return [
        f"[{run.name}]({os.path.relpath(run.dir / 'report.md', out.parent)})",
        label,
        millions(run.result(BASE_MODEL).get("params")),
        fmt(base_bpb(run)),
        fmt(run.result(BASE_EVAL).get("core_metric"), ".4f"),
        model or DASH,
        fmt(ev.get("chatcore"), ".4f"),
        *[fmt(((ev.get("tasks") or {}).get(t) or {}).get("accuracy")) for t in tasks],
        money(run_totals(run, prices)[1]),
    ]


def _depth_axis(runs: list[RunResults]) -> list[int] | None:
    """Each run's depth when every run has its own (a depth sweep), else None (one category per run)."""
    depths = [run_settings(r).get(DEPTH_KEY) for r in runs]
    return depths if all(isinstance(d, int) for d in depths) and len(set(depths)) == len(depths) > 1 else None


def _plot(runs: list[RunResults], labels: list[str], path: Path) -> None:
    models = [final_chat_model(r) for r in runs]
    chatcore = [r.result(CHAT_EVALS[m]).get("chatcore") if m else None for r, m in zip(runs, models, strict=True)]
    bpb = [base_bpb(r) for r in runs]
    plot_sweep(labels, _depth_axis(runs), bpb, chatcore, [m or DASH for m in models], path)


def _markdown(runs: list[RunResults], labels: list[str], out: Path, prices: ReportConfig) -> str:
    tasks: list[str] = []
    for r in runs:
        tasks += [t for t in eval_tasks(r) if t not in tasks]
    header = ["run", "varied", "params", "val bpb", "CORE", "model", "ChatCORE", *tasks, "est. cost"]
    rows = [_sweep_row(r, label, tasks, out, prices) for r, label in zip(runs, labels, strict=True)]
    lines = [
        f"# llmstack sweep: {out.parent.name}",
        "",
        f"{len(runs)} runs; generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}. Chat metrics are the most "
        f"trained evaluated model of each run ({', else '.join(reversed(CHAT_EVALS))}). Cost sums the run's "
        f"stages at ${prices.gpu_hour_price:.2f} per GPU-hour, ${prices.cpu_hour_price:.2f} per CPU machine-hour. "
        "Varied: the settings whose values differ between the runs' stage configs (of settings that change "
        "together, the first).",
        "",
        *table(header, rows, text_columns=2),
        "",
        f"![sweep]({SWEEP_PNG})",
        "",
    ]
    return "\n".join(lines)


def write_sweep(out: Path | str, run_dirs: list[Path | str], report: ReportConfig | None = None) -> Path:
    """runs/<sweep>/sweep.md: one row per run, and a plot of val bpb and ChatCORE across the sweep."""
    out = Path(out)
    if not run_dirs:
        raise ValueError("a sweep report needs at least one run folder")
    runs = [load_run(d) for d in run_dirs]
    labels = [
        " ".join(f"{k}={x}" for k, x in v.items()) or r.name for r, v in zip(runs, varied_settings(runs), strict=True)
    ]
    _plot(runs, labels, out.parent / SWEEP_PNG)  # before the markdown, so it never links a missing plot
    write_text(out, _markdown(runs, labels, out, report or ReportConfig()))
    # remember the runs so `llmstack report` can regenerate the sweep later
    listed = {"runs": [os.path.relpath(r.dir, out.parent) for r in runs]}
    write_text(out.parent / SWEEP_JSON, json.dumps(listed, indent=2) + "\n")
    return out


def _report_folders(runs_root: Path, run: str | None) -> list[Path]:
    """The run and sweep folders to rewrite: `run` alone, or every one under runs_root."""
    if run is not None:
        folder = runs_root / run
        if not (folder / "run.json").is_file() and not (folder / SWEEP_JSON).is_file():
            known = sorted(p.parent.name for p in runs_root.glob("*/run.json"))
            raise FileNotFoundError(f"no run named {run!r} under {runs_root}/ (known: {', '.join(known) or 'none'})")
        return [folder]
    folders = sorted({p.parent for p in [*runs_root.glob("*/run.json"), *runs_root.glob(f"*/{SWEEP_JSON}")]})
    if not folders:
        raise FileNotFoundError(f"no runs under {runs_root}/: run the workflow first (snakemake --cores all)")
    return sorted(folders, key=lambda f: (f / SWEEP_JSON).is_file())  # runs before the sweeps that list them


def regenerate(
    runs_root: Path | str = "runs", run: str | None = None, report: ReportConfig | None = None
) -> list[Path]:
    """Rewrite report.md of one run (or sweep.md of one sweep) folder under `runs_root`, or of all of them."""
    written = []
    for folder in _report_folders(Path(runs_root), run):
        if (folder / "run.json").is_file():
            written.append(write_report(folder, report))
        else:
            listed = read_json(folder / SWEEP_JSON)["runs"]
            written.append(write_sweep(folder / "sweep.md", [folder / p for p in listed], report))
    return written
