"""Report stage: runs/<run>/report.md and its PNG curves from the run's stage results.

    python -m llmstack.launch report runs/<run>

Takes the run folder only (no --config): everything it reports is already in the stage folders
named by runs/<run>/run.json. See llmstack.report.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from llmstack.report import write_report
from llmstack.stages.common import provenance


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m llmstack.stages.report runs/<run>")
    print(f"[report] {json.dumps(provenance())}", flush=True)
    t0 = time.time()
    try:
        out = write_report(Path(argv[0]))
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"[report] {err}") from err
    print(f"[report] wrote {out}", flush=True)
    print(f"[report] done in {time.time() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
