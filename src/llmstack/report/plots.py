"""The report card's PNGs: training loss over val bpb per trained stage, and reward curves.

Which stages get a plot is read from the data, not from a list of stages: a column for every
stage whose metrics.jsonl logs a training loss, a row for every stage that logs a reward.
Figures render with Agg through `Figure.savefig`, so no display (or pyplot state) is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmstack.artifacts import atomic_path
from llmstack.report.gather import LOSS_KEY, REWARD_KEY, RunResults
from llmstack.report.markdown import num

LOSS_PNG, REWARD_PNG = "loss_curves.png", "reward_curves.png"
# curves that accompany a reward when the stage logs them (names written by llmstack.rl)
PASS_KEY, HELD_OUT_KEY, LENGTH_KEY = "rl/pass@k", "eval/accuracy", "rl/seq_len"


def series(history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one metric from metrics.jsonl entries that carry it."""
    pairs = [(e["step"], e[key]) for e in history if num(e.get(key)) is not None and "step" in e]
    return [p[0] for p in pairs], [float(p[1]) for p in pairs]


def smoothing(n: int) -> float:
    """EMA factor for a curve of n points: none up to 20 points, then a window of about n/20 (≤ 20)."""
    return min(0.95, max(0.0, 1 - 20 / max(n, 1)))


def ema(values: list[float], beta: float) -> list[float]:
    """Bias-corrected exponential moving average (starts on the first value instead of at zero)."""
    out, avg = [], 0.0
    for i, v in enumerate(values):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** (i + 1)) if beta else v)
    return out


def save_png(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def noisy_curve(ax, steps: list[float], values: list[float], label: str, color: str = "C0") -> None:
    """A per-step curve: faint raw values under their EMA once there are enough points to smooth."""
    beta = smoothing(len(values))
    if beta:
        ax.plot(steps, values, lw=0.6, alpha=0.35, color=color)
        ax.plot(steps, ema(values, beta), lw=1.6, color=color, label=f"{label} (EMA {beta:.2f})")
    else:
        ax.plot(steps, values, lw=1.2, color=color, label=label)


def plot_training(run: RunResults, path: Path) -> bool:
    """Train loss (raw and smoothed) over val bpb, one column per stage that logs a loss; False if none."""
    from matplotlib.figure import Figure

    names = run.having(LOSS_KEY)
    if not names:
        return False
    fig = Figure(figsize=(4.4 * len(names), 6.0), layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False, sharex="col")
    for col, name in enumerate(names):
        hist = run.history(name)
        top, bottom = axes[0][col], axes[1][col]
        noisy_curve(top, *series(hist, LOSS_KEY), "train loss")
        top.set_title(name)
        top.set_ylabel("train loss (nats/token)")
        top.legend(fontsize=8)
        bottom.plot(*series(hist, "val/bpb"), marker="o", color="C1")
        bottom.set_ylabel("val bits per byte")
        bottom.set_xlabel("step")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    save_png(fig, path)
    return True


def _reward_axes(ax, hist: list[dict[str, Any]], name: str, present: set[str]) -> None:
    noisy_curve(ax, *series(hist, REWARD_KEY), REWARD_KEY)
    if PASS_KEY in present:
        ax.plot(*series(hist, PASS_KEY), lw=1.0, color="C2", label=PASS_KEY)
    if HELD_OUT_KEY in present:
        ax.plot(*series(hist, HELD_OUT_KEY), marker="o", color="C3", label=f"{HELD_OUT_KEY} (held out)")
    ax.set_xlabel("step")
    ax.set_title(f"{name}: reward")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def plot_rewards(run: RunResults, path: Path) -> bool:
    """Reward, pass@k and held-out accuracy per step, and mean sampled length, one row per stage
    that logs a reward; False if none."""
    from matplotlib.figure import Figure

    names = run.having(REWARD_KEY)
    if not names:
        return False
    present = {k for n in names for e in run.history(n) for k in e}
    cols = 2 if LENGTH_KEY in present else 1
    fig = Figure(figsize=(10.0 if cols == 2 else 6.0, 4.0 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), cols, squeeze=False)
    for row, name in enumerate(names):
        hist = run.history(name)
        _reward_axes(axes[row][0], hist, name, {k for e in hist for k in e})
        if cols == 2:
            axes[row][1].plot(*series(hist, LENGTH_KEY), color="C4")
            axes[row][1].set_xlabel("step")
            axes[row][1].set_title(f"{LENGTH_KEY} (tokens)")
            axes[row][1].grid(alpha=0.3)
    save_png(fig, path)
    return True
