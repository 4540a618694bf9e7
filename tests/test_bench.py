"""The benchmark scripts run end to end on a tiny shape (no figures asserted: only that they work)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_inference_bench_tiny():
    out = run_bench("inference.py", "--depth", "1", "--dim", "64", "--head-dim", "32", "--seq", "64",
                    "--vocab", "512", "--prompt-tokens", "8", "--new-tokens", "8", "--batch-sizes", "1,2",
                    "--repeats", "1", "--threads", "1",
                    "--compare-engine", str(ROOT / "src/llmstack/engine.py"))  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith(("llmstack", str(ROOT)))]
    assert len(rows) == 4 and all("MiB" in row for row in rows)  # 2 engines x 2 batch sizes


def test_train_throughput_bench_tiny():
    out = run_bench("train_throughput.py", "--depth", "1", "--dim", "64", "--head-dim", "32", "--seq", "64",
                    "--batch", "2", "--total-batch", "256", "--steps", "2", "--warmup", "1", "--vocab", "512",
                    "--corpus-bytes", "200000",
                    "--precision", "fp32", "--threads", "1", "--matmul-floor")  # fmt: skip
    assert "peak " in out and "tok/s" in out and "MFU" in out and "generated corpus" in out
    assert "batch 2 x 2 micro-batches per optimizer step" in out  # --total-batch 256 = 2 x (2 x 64 tokens)
    floor = next(line for line in out.splitlines() if line.startswith("matmul floor"))
    assert "MFU ceiling" in floor and int(floor.split("(")[1].split()[0]) > 10  # > 10 matmuls recorded
