"""Process-group setup for `torchrun` runs (one process per GPU, or several CPU processes).

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them the run is a single process and no
process group is created. Backend: nccl when CUDA is available, gloo on CPU. Only rank 0 writes
files and prints; every collective here is a no-op in a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from acmix_deploy.errors import AcmixError


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(prefer_cuda: bool = True) -> DistEnv:
    """Read the torchrun environment, pick the device, and join the process group if there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = prefer_cuda and torch.cuda.is_available()
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise AcmixError(
                f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible): "
                "use --nproc_per_node <= the number of GPUs"
            )
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistEnv(rank=rank, world=world, local_rank=local_rank, device=device)


def teardown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(env: DistEnv, values: list[float]) -> list[float]:
    """Sum a few numbers over all processes (float64, so counts stay exact)."""
    if not env.distributed:
        return list(values)
    device = env.device if env.device.type == "cuda" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def gather_objects(env: DistEnv, obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order (e.g. RNG states for a checkpoint)."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(env: DistEnv, obj: Any) -> Any:
    """Rank 0's `obj` on every process (e.g. an error message, so all processes stop together)."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_buffers(env: DistEnv, module: torch.nn.Module) -> None:
    """Give every process rank 0's buffers (batch-norm statistics), so all evaluate one model."""
    if env.distributed:
        for buf in module.buffers():
            dist.broadcast(buf, src=0)

