"""Sweep report stage: runs/<sweep>/sweep.md comparing the runs of a sweep, with a plot.

    python -m llmstack.launch sweep_report runs/<sweep>/sweep.md runs/<run1> runs/<run2> ...

Takes the output path and the run folders only (no --config). See llmstack.report.write_sweep.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from llmstack.report import write_sweep
from llmstack.stages.common import provenance


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m llmstack.stages.sweep_report runs/<sweep>/sweep.md runs/<run> ...")
    print(f"[sweep_report] {json.dumps(provenance())}", flush=True)
    t0 = time.time()
    try:
        out = write_sweep(Path(argv[0]), [Path(p) for p in argv[1:]])
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"[sweep_report] {err}") from err
    print(f"[sweep_report] wrote {out} from {len(argv) - 1} run folder(s)", flush=True)
    print(f"[sweep_report] done in {time.time() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
