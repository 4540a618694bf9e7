"""Report stage: runs/<run>/report.md and its PNG curves from the run's stage results.

    python -m llmstack.launch report runs/<run> --config '{"report": {"gpu_hour_price": 3.0, ...}}'

The run folder names the stage folders (runs/<run>/run.json); --config carries only the `report`
section (prices), so a `report.*` override reaches the cost column. See llmstack.report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from llmstack.artifacts import provenance
from llmstack.config import ReportConfig, build_section
from llmstack.report import write_report
from llmstack.report.plots import LOSS_PNG, REWARD_PNG, save_png


def report_config(text: str, prog: str) -> ReportConfig:
    """The typed `report` section of a --config JSON ('{}' = the schema's defaults)."""
    try:
        return build_section("report", json.loads(text)["report"]) if text.strip() != "{}" else ReportConfig()
    except (ValueError, KeyError, TypeError) as err:  # JSON and OmegaConf errors are ValueErrors
        raise SystemExit(f"[{prog}] bad --config (want '{{\"report\": {{...}}}}'): {err}") from err


def ensure_plots(run_dir: Path) -> None:
    """The workflow declares both PNGs (for `snakemake --report`): a run without such curves gets a
    figure that says so, rather than a missing output."""
    from matplotlib.figure import Figure

    for name, what in ((LOSS_PNG, "no stage logged a training loss"), (REWARD_PNG, "no RL stage logged a reward")):
        if not (run_dir / name).exists():
            fig = Figure(figsize=(6.0, 1.5))
            fig.text(0.5, 0.5, what, ha="center", va="center")
            save_png(fig, run_dir / name)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m llmstack.stages.report")
    ap.add_argument("run", type=Path, help="the run folder runs/<run>")
    ap.add_argument("--config", default="{}", help='the report section as JSON: {"report": {...}}')
    args = ap.parse_args(argv)
    prices = report_config(args.config, "report")
    print(f"[report] {json.dumps(provenance())}", flush=True)
    t0 = time.time()
    try:
        out = write_report(args.run, prices)
        ensure_plots(args.run)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"[report] {err}") from err
    print(f"[report] wrote {out}", flush=True)
    print(f"[report] done in {time.time() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
