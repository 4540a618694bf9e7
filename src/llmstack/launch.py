"""Start a stage the way its hardware wants: `python -m llmstack.launch <stage> <args...>`.

Training stages run under `torchrun --standalone --nproc_per_node=N` when N > 1, where N is the
number of visible CUDA devices, or `cpu_procs` gloo processes on a machine without a GPU. Other
stages (and N == 1) run as a plain `python -m llmstack.stages.<stage>`, which starts faster.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

DISTRIBUTED = {"pretrain", "midtrain", "sft", "rl"}


def process_count(execution: dict) -> int:
    import torch

    if execution.get("device", "auto") in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, int(execution.get("cpu_procs", 1)))


def command(stage: str, args: list[str]) -> list[str]:
    module = f"llmstack.stages.{stage}"
    if importlib.util.find_spec(module) is None:
        raise SystemExit(f"llmstack: there is no stage named {stage!r}")
    nproc = 1
    if stage in DISTRIBUTED and "--execution" in args:
        nproc = process_count(json.loads(args[args.index("--execution") + 1]))
    if nproc > 1:
        return ["torchrun", "--standalone", f"--nproc_per_node={nproc}", "-m", module, *args]
    return [sys.executable, "-m", module, *args]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        raise SystemExit("usage: python -m llmstack.launch <stage> <stage args...>")
    cmd = command(argv[0], argv[1:])
    print("llmstack.launch:", " ".join(cmd[:6]), "...", flush=True)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
