"""Start a stage the way its hardware wants: `python -m llmstack.launch <stage> <args...>`.

Distributed stages (the stage table's `distributed` column) run under `torchrun --standalone
--nproc_per_node=N` when N > 1, where N is the number of visible CUDA devices, or the stage's
`cpu_procs` gloo processes on a machine without a GPU. Other stages (and N == 1) run as a plain
`python -m llmstack.stages.<stage>`, which starts faster. Run-level entries (report,
sweep_report, run_manifest) are started the plain way too.

With `<stage>.nodes` > 1 (an execution setting, never a rerun trigger) the job is a Slurm allocation
of that many nodes: one agent per node (`srun --ntasks-per-node=1 torchrun --nnodes N
--nproc-per-node G --rdzv-backend c10d --rdzv-endpoint <first node>:<port> --rdzv-id <job id>`),
the first node's address from Slurm (cluster.rendezvous_host). G is `gpus_per_node`
when set, else the visible devices (or `cpu_procs`). Without Slurm, nodes > 1 fails in one line.

Before starting anything, every `--input NAME=PATH` must exist: on a cluster a missing input
nearly always means a folder that is not on storage every node sees.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import sys

from llmstack.cluster import rendezvous_host
from llmstack.pipeline import STAGES

RDZV_PORT = 29500  # c10d rendezvous port on the first node of the allocation
SHARED = "artifacts/, runs/ and .snakemake/ must be on a file system every node sees"


def training_settings(stage: str, config: dict, execution: dict):
    """The distributed stage's own section (a LoopConfig), typed, its execution settings merged in."""
    from llmstack.config import build_section

    own = STAGES[stage].sections[-1]
    return build_section(own, config[own], execution.get(own, {}))


def process_count(loop) -> int:
    """Processes per node for one job of a distributed stage with these settings."""
    import torch

    if loop.device in ("auto", "cuda") and loop.gpus_per_node > 0:
        return loop.gpus_per_node  # what the job asked Slurm for on each node
    if loop.device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, loop.cpu_procs)


def multinode_command(module: str, args: list[str], nodes: int, nproc: int) -> list[str]:
    if "SLURM_JOB_ID" not in os.environ or shutil.which("srun") is None:
        raise SystemExit(
            f"llmstack: nodes={nodes} needs a Slurm job (SLURM_JOB_ID and srun), e.g. "
            "snakemake --profile profiles/slurm; set nodes=1 to run on this machine"
        )
    endpoint = f"{rendezvous_host(os.environ['SLURM_JOB_NODELIST'])}:{RDZV_PORT}"
    return [
        "srun", f"--nodes={nodes}", "--ntasks-per-node=1",
        "torchrun", "--nnodes", str(nodes), "--nproc-per-node", str(nproc),
        "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint,
        "--rdzv-id", os.environ["SLURM_JOB_ID"],
        "-m", module, *args,
    ]


def check_inputs(args: list[str]) -> None:
    """Each `--input NAME=PATH` must exist here; one line naming it (and the storage rule) if not."""
    for i, arg in enumerate(args[:-1]):
        if arg == "--input" and "=" in args[i + 1]:
            path = args[i + 1].split("=", 1)[1]
            if not os.path.exists(path):
                raise SystemExit(f"llmstack: input {path} not found on {socket.gethostname()}: {SHARED}")


def _option(args: list[str], name: str) -> dict:
    return json.loads(args[args.index(name) + 1]) if name in args else {}


def command(stage: str, args: list[str]) -> list[str]:
    module = f"llmstack.stages.{stage}"
    if importlib.util.find_spec(module) is None:
        raise SystemExit(f"llmstack: there is no stage named {stage!r}")
    nproc, nodes = 1, 1
    if stage in STAGES and STAGES[stage].distributed:
        loop = training_settings(stage, _option(args, "--config"), _option(args, "--execution"))
        nproc, nodes = process_count(loop), loop.nodes
    if nodes > 1:
        return multinode_command(module, args, nodes, nproc)
    if nproc > 1:
        return ["torchrun", "--standalone", f"--nproc_per_node={nproc}", "-m", module, *args]
    return [sys.executable, "-m", module, *args]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        raise SystemExit("usage: python -m llmstack.launch <stage> <stage args...>")
    try:
        check_inputs(argv[1:])
        cmd = command(argv[0], argv[1:])
    except SystemExit as err:  # one line on stderr, exit 2
        if isinstance(err.code, str):
            print(err.code, file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        raise
    print("llmstack.launch:", " ".join(cmd[: cmd.index("-m") + 2]), "...", flush=True)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
