"""Data-parallel training with ``torchrun`` (PyTorch DDP; gloo on CPU, NCCL on GPUs).

``torchrun --nproc_per_node N -m spikescale train RECIPE ...`` starts N processes; each sees the same
global batch (sources are seeded identically), trains on its contiguous share of it inside a
``DistributedDataParallel`` wrapper (gradients averaged across processes), and the epoch metrics are
summed across processes. With equal shares this is the same optimisation as one process on the whole
global batch. Only rank 0 writes the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist

from ..data.batch import Batch

__all__ = ["DistributedContext"]


@dataclass(frozen=True)
class DistributedContext:
    """Rank and world size of this process (``world == 1``: no distribution)."""

    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "cpu") -> "DistributedContext":
        """Join the process group that ``torchrun`` describes in the environment (or stay single-process)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not dist.is_initialized():
            backend = "nccl" if device.startswith("cuda") else "gloo"
            dist.init_process_group(backend)
            if device.startswith("cuda"):
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        return cls(dist.get_rank(), dist.get_world_size())

    def shard(self, batch: Batch) -> Batch:
        """This process's contiguous share of a global batch (the batch size must divide evenly)."""
        if not self.enabled:
            return batch
        size = batch.size
        if size % self.world:
            raise ValueError(f"global batch of {size} samples does not split evenly over {self.world} processes")
        share = size // self.world
        return batch.take(slice(self.rank * share, (self.rank + 1) * share))

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of ``values`` over all processes (float64)."""
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(list(values), dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()
