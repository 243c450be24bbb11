"""Data-parallel training across the processes ``torchrun`` starts: process group, ranks, shards, collectives.

Without torchrun's environment (``WORLD_SIZE`` unset or 1) every method is a cheap no-op for one process.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipelines.runtime import Runtime


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job: global ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Distributed:
        """Read the ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` variables torchrun sets."""
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, bundles, metrics and plots."""
        return self.rank == 0

    def start(self, runtime: Runtime) -> Runtime:
        """Join the process group (NCCL on CUDA, gloo on CPU); on CUDA each process takes GPU ``local_rank``."""
        if not self.enabled:
            return runtime
        if runtime.device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            runtime = dataclasses.replace(runtime, device=torch.device("cuda", self.local_rank))
        if not dist.is_initialized():
            dist.init_process_group("nccl" if runtime.device.type == "cuda" else "gloo")
        return runtime

    def stop(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def wrap(self, model: nn.Module, runtime: Runtime) -> nn.Module:
        """The model to train: DistributedDataParallel (gradients averaged over processes) or the model itself."""
        if not self.enabled:
            return model
        device_ids = [self.local_rank] if runtime.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def shard(self, indices: list[int]) -> list[int]:
        """This process's share of one global index sequence (every ``world_size``-th, from ``rank``)."""
        return indices[self.rank::self.world_size]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process (any picklable object)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Each value averaged over the processes."""
        if not self.enabled:
            return values
        gathered: list[dict[str, float]] = [{} for _ in range(self.world_size)]
        dist.all_gather_object(gathered, values)
        return {k: sum(g[k] for g in gathered) / self.world_size for k in values}
