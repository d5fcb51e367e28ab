"""Data-parallel runs (torchrun): which share of the docs this process answers, and the barrier that keeps
the ranks in step. One process is rank 0 of 1, and then nothing here touches torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    """This process's share of a data-parallel run: rank r answers the r-th contiguous block of the unanswered
    docs (deterministic: every rank computes the same list after a barrier) and appends them to its own rank
    file; rank 0 merges the rank files into the task's answer file, scores and writes the metrics."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def block(self, todo: list) -> list:
        """This rank's contiguous block of `todo` (so the questions on one image mostly stay in one process:
        one vision pass, one prefill)."""
        per = -(-len(todo) // self.world)
        return todo[self.rank * per:(self.rank + 1) * per]

    def device(self) -> str | None:
        """The device of this rank under torchrun (its local GPU, or the CPU); None for a single process."""
        if self.world <= 1:
            return None
        import torch

        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"


SINGLE = Shard()  # the one process of a run that is not data-parallel


def shard_from_env() -> Shard:
    """The shard of a process started by torchrun (WORLD_SIZE > 1): joins the process group (NCCL on GPUs,
    gloo on CPU); otherwise the single shard."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return Shard(dist.get_rank(), dist.get_world_size())
