"""Sandbox overhead: runs per second of a trivial program for each isolation method that works here.

    python bench/sandbox.py [--runs 40] [--workers 1]

Prints one line per method; methods that do not work on this machine are reported and skipped.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from llmstack.sandbox import SandboxUnavailable, resolve_isolation, run_python

PROGRAM = "def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\n"


def bench(method: str, runs: int, workers: int) -> float:
    """Runs per second of PROGRAM under `method` (every run must prove its pass)."""
    run_python(PROGRAM, isolation=method)  # warm: probe and page cache
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda _: run_python(PROGRAM, isolation=method), range(runs)))
    elapsed = time.perf_counter() - t0
    assert all(r.ok for r in results), "a trivial program failed in the sandbox"
    return runs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    for method in ("bwrap", "unshare", "none"):
        try:
            resolve_isolation(method)
        except SandboxUnavailable as e:
            print(f"{method:8s} unavailable: {e}")
            continue
        rate = bench(method, args.runs, args.workers)
        print(f"{method:8s} {rate:6.1f} runs/s  ({1000 / rate:5.0f} ms/run, {args.workers} worker(s))")


if __name__ == "__main__":
    main()
