"""What llmstack asks of a Slurm cluster, through Slurm's own commands (never Snakemake's).

- `rendezvous_host`: where the c10d rendezvous of a multi-node job lives: the address Slurm itself
  reaches the allocation's first node at (its NodeAddr; clusters whose node names are not in DNS
  still work), else the node's name.
- `check_jobs`: the checks made once, after the DAG is built and before any job is submitted
  (the Snakefile's onstart): several nodes need the Slurm executor; the Slurm executor needs
  Slurm's commands and a partition that exists (named, or the cluster's default).

The time-limit warning: training rules ask sbatch for `--signal=URG@<seconds>` (STOP_SIGNAL). Slurm
sends it to every process of the job's steps; under Snakemake's jobstep executor that includes the
job's own `snakemake`, its `bash` and torchrun's agent, which SIGUSR1's default action would kill
(ending the step and its ranks mid-save). SIGURG is ignored by default by all of them, and the
harness treats it like SIGUSR1: checkpoint at the end of the step, exit 75.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from dataclasses import dataclass

STOP_SIGNAL = signal.SIGURG
WARN_SECONDS = 600  # before the time limit: long enough for one step and a checkpoint of a big model


def _slurm(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


def rendezvous_host(nodelist: str) -> str:
    """The first node of an allocation, as an address the other nodes can reach."""
    names = _slurm("scontrol", "show", "hostnames", nodelist).split()
    if not names:
        raise SystemExit(f"llmstack: scontrol listed no host for the node list {nodelist!r}")
    for field in _slurm("scontrol", "show", "node", "--oneliner", names[0]).split():
        if field.startswith("NodeAddr=") and field != "NodeAddr=":
            return field.split("=", 1)[1]
    return names[0]


def partitions() -> tuple[list[str], str | None]:
    """(every partition name, the default one or None), from `sinfo`."""
    names, default = [], None
    for name in _slurm("sinfo", "--noheader", "--format=%P").split():
        if name.endswith("*"):
            name = default = name[:-1]
        if name not in names:
            names.append(name)
    return names, default


@dataclass(frozen=True)
class JobAsk:
    """What one job of the plan asks for (from the rule's evaluated resources)."""

    rule: str
    nodes: int
    partition: str | None
    local: bool = False  # a local rule (run.json, export, chat): runs on this host, in no partition


def check_jobs(jobs: list[JobAsk], executor: str) -> None:
    """One line (SystemExit) for the first request this executor cannot serve; silent otherwise."""
    if executor != "slurm":
        for job in jobs:
            if job.nodes > 1:
                raise SystemExit(
                    f"llmstack: {job.rule}.nodes={job.nodes} needs the Slurm executor "
                    f"(snakemake --profile profiles/slurm); set {job.rule}.nodes=1 to train on this machine"
                )
        return
    missing = [c for c in ("sbatch", "sinfo", "squeue", "srun") if shutil.which(c) is None]
    if missing:
        raise SystemExit(
            f"llmstack: the slurm executor needs Slurm's commands on this host ({', '.join(missing)} not found)"
        )
    names, default = partitions()
    listed = ", ".join(n + (" (default)" if n == default else "") for n in names) or "none"
    for job in (j for j in jobs if not j.local):
        if job.partition and job.partition not in names:
            raise SystemExit(
                f"llmstack: Slurm partition {job.partition!r} (rule {job.rule}) does not exist here; "
                f"partitions: {listed}"
            )
        if not job.partition and default is None:
            raise SystemExit(
                f"llmstack: rule {job.rule} names no Slurm partition and the cluster has no default one; "
                f"add --default-resources slurm_partition=NAME (partitions: {listed})"
            )
