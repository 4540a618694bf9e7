"""Sweep report stage: runs/<sweep>/sweep.md comparing the runs of a sweep, with a plot.

    python -m llmstack.launch sweep_report runs/<sweep>/sweep.md runs/<a> runs/<b> ... --config JSON

--config carries the `report` section (prices), as for the report stage.
See llmstack.report.write_sweep.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from llmstack.artifacts import provenance
from llmstack.report import write_sweep
from llmstack.stages.report import report_config


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m llmstack.stages.sweep_report")
    ap.add_argument("out", type=Path, help="runs/<sweep>/sweep.md")
    ap.add_argument("runs", type=Path, nargs="+", help="the run folders runs/<run> to compare")
    ap.add_argument("--config", default="{}", help='the report section as JSON: {"report": {...}}')
    args = ap.parse_args(argv)
    prices = report_config(args.config, "sweep_report")
    print(f"[sweep_report] {json.dumps(provenance())}", flush=True)
    t0 = time.time()
    try:
        out = write_sweep(args.out, args.runs, prices)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"[sweep_report] {err}") from err
    print(f"[sweep_report] wrote {out} from {len(args.runs)} run folder(s)", flush=True)
    print(f"[sweep_report] done in {time.time() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
