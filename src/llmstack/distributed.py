"""Process-group setup for torchrun (NCCL on CUDA, gloo on CPU) and the few collectives we use.

A plain `python -m ...` run is a world of one: every helper here then does nothing.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from llmstack.device import pick_device, set_cpu_threads


@dataclass(frozen=True)
class Dist:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device_preference: str = "auto") -> Dist:
    """Join the torchrun process group if there is one; pick this rank's device and CPU threads."""
    rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    device = pick_device(device_preference)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        set_cpu_threads(int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None
        )
    return Dist(rank, local_rank, world, device)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean(value: float, device: torch.device) -> float:
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.item() / dist.get_world_size()


def placement() -> list[str]:
    """The node each rank runs on, by rank: the Slurm node name inside a Slurm job (several may
    share a host), else the host name. Collective: every rank calls it."""
    here = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    if not dist.is_initialized():
        return [here]
    nodes: list[str] = [""] * dist.get_world_size()
    dist.all_gather_object(nodes, here)
    return nodes


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
