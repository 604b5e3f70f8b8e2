"""Deterministic, resumable, shardable batch order.

Epoch ``e`` shuffles with a generator seeded from ``(seed, e)``; rank ``r`` of ``W`` processes
takes every W-th sample. The batches of an epoch are a pure function of (seed, epoch, rank,
world size), so a run resumed at batch ``b`` of epoch ``e`` sees exactly what an
uninterrupted run would have seen.
"""

from __future__ import annotations

import torch


class EpochBatches:
    """Batches of dataset indices for each epoch (incomplete last batch dropped)."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.batches_per_epoch = num_samples // (batch_size * world_size)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the training set has {num_samples} samples, fewer than one batch of "
                f"{batch_size} x {world_size} process(es): use more data or a smaller optim.batch_size"
            )

    def epoch(self, epoch: int, start_batch: int = 0) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.num_samples, generator=generator)
        used = self.batches_per_epoch * self.batch_size * self.world_size
        mine = order[:used][self.rank::self.world_size].tolist()
        batches = [mine[i:i + self.batch_size] for i in range(0, len(mine), self.batch_size)]
        return batches[start_batch:]
