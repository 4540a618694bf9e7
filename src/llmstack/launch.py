"""Start a stage the way its hardware wants: `python -m llmstack.launch <stage> <args...>`.

Distributed stages (the stage table's `distributed` column) run under `torchrun --standalone
--nproc_per_node=N` when N > 1, where N is the number of visible CUDA devices, or the stage's
`cpu_procs` gloo processes on a machine without a GPU. Other stages (and N == 1) run as a plain
`python -m llmstack.stages.<stage>`, which starts faster. Run-level entries (report,
sweep_report, run_manifest) are started the plain way too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

from llmstack.pipeline import STAGES


def process_count(stage: str, config: dict, execution: dict) -> int:
    """Processes for one job of a distributed `stage`, from its slice and execution settings."""
    import torch

    from llmstack.config import build_section

    own = STAGES[stage].sections[-1]
    loop = build_section(own, config[own], execution.get(own, {}))
    if loop.device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, loop.cpu_procs)


def _option(args: list[str], name: str) -> dict:
    return json.loads(args[args.index(name) + 1]) if name in args else {}


def command(stage: str, args: list[str]) -> list[str]:
    module = f"llmstack.stages.{stage}"
    if importlib.util.find_spec(module) is None:
        raise SystemExit(f"llmstack: there is no stage named {stage!r}")
    nproc = 1
    if stage in STAGES and STAGES[stage].distributed:
        nproc = process_count(stage, _option(args, "--config"), _option(args, "--execution"))
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
