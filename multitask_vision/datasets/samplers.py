"""Homogeneous multi-source batches: every batch comes from one source, chosen by a strategy.

``MultiSourceSampler`` shards each source over the distributed ranks (seeded, re-shuffled per epoch);
``MultiSourceBatchSampler`` picks the source of every batch with a strategy and fills the batch from that
source's shard. The choice of source per step is the same on every rank (one shared seeded generator), so
all ranks run the same heads at the same step, which DDP needs.

Strategies (p_s = probability that a batch comes from source s, n_s = its size):

* ``proportional``: each sample once per epoch; batches of all sources shuffled (p_s ∝ n_s);
* ``round_robin``: sources in turn;
* ``weighted``: p_s ∝ ``weights[s]``;
* ``temperature``: p_s ∝ n_s^(1/T) (T=1 proportional, T→∞ uniform).

An epoch has ``sum_s floor(shard_s / batch_size)`` batches whatever the strategy; sources drawn more often
than their size allows cycle through their shard again (re-shuffled).

Configure in ``train_dataloader``::

    sampler=dict(type='MultiSourceSampler', shuffle=True),
    batch_sampler=dict(type='MultiSourceBatchSampler', strategy='temperature', temperature=2.0),
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import BatchSampler, Sampler

from multitask_vision.registry import DATA_SAMPLERS
from multitask_vision.utils.errors import UserError

STRATEGIES = ("proportional", "round_robin", "weighted", "temperature")


@DATA_SAMPLERS.register_module()
class MultiSourceSampler(Sampler):
    """Per-source, rank-sharded, seeded index streams over a ``MultiSourceDataset``."""

    def __init__(self, dataset, shuffle: bool = True, seed: int | None = None) -> None:
        if not hasattr(dataset, "source_of") or not hasattr(dataset, "cumulative_sizes"):
            raise UserError(f"MultiSourceSampler needs a MultiSourceDataset, got {type(dataset).__name__}")
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else seed
        self.rank, self.world_size = get_dist_info()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shards(self, epoch: int | None = None, cycle: int = 0) -> list[list[int]]:
        """This rank's global indices of every source for ``epoch`` (``cycle`` re-shuffles a repeat pass).

        Each source is padded (by repeating its first indices) to a multiple of the world size, so all
        ranks get equally many samples of every source and no two ranks share a sample within a pass.
        """
        epoch = self.epoch if epoch is None else epoch
        out = []
        start = 0
        for s, end in enumerate(self.dataset.cumulative_sizes):
            idx = np.arange(start, end)
            if self.shuffle:
                rng = np.random.default_rng([self.seed, epoch, s, cycle])
                idx = rng.permutation(idx)
            total = math.ceil(len(idx) / self.world_size) * self.world_size
            idx = np.resize(idx, total)  # np.resize repeats from the start
            out.append(idx[self.rank :: self.world_size].tolist())
            start = end
        return out

    def shard_sizes(self) -> list[int]:
        """Samples of every source on this rank (without building the permutations)."""
        return [math.ceil(n / self.world_size) for n in self.dataset.source_sizes]

    def __iter__(self) -> Iterator[int]:
        for shard in self.shards():
            yield from shard

    def __len__(self) -> int:
        return sum(self.shard_sizes())


@DATA_SAMPLERS.register_module()
class MultiSourceBatchSampler(BatchSampler):
    """Batches of ``batch_size`` indices from one source each, sources picked by ``strategy``."""

    def __init__(
        self,
        sampler: MultiSourceSampler,
        batch_size: int,
        strategy: str = "proportional",
        weights: Sequence[float] | None = None,
        temperature: float | None = None,
    ) -> None:
        if not isinstance(sampler, MultiSourceSampler):
            raise UserError(
                "MultiSourceBatchSampler needs train_dataloader.sampler=dict(type='MultiSourceSampler'), "
                f"got {type(sampler).__name__}"
            )
        if strategy not in STRATEGIES:
            raise UserError(f"batch_sampler.strategy={strategy!r}; choose one of {STRATEGIES}")
        if (weights is not None) != (strategy == "weighted"):
            raise UserError("batch_sampler.weights is required for, and only used by, strategy='weighted'")
        if (temperature is not None) != (strategy == "temperature"):
            raise UserError(
                "batch_sampler.temperature is required for, and only used by, strategy='temperature'"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"batch_size must be a positive int, got {batch_size!r}")
        self.sampler: MultiSourceSampler = sampler
        self.batch_size = batch_size
        self.strategy = strategy
        sizes = np.array(sampler.dataset.source_sizes, dtype=np.float64)
        if strategy == "weighted":
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != sizes.shape or (w < 0).any() or w.sum() <= 0:
                raise UserError(
                    f"batch_sampler.weights must be {len(sizes)} non-negative numbers (one per source: "
                    f"{list(sampler.dataset.source_names)}), got {weights}"
                )
            self.probs = w / w.sum()
        elif strategy == "temperature":
            assert temperature is not None  # checked above
            if temperature <= 0:
                raise UserError(f"batch_sampler.temperature must be > 0, got {temperature}")
            p = sizes ** (1.0 / temperature)
            self.probs = p / p.sum()
        else:
            self.probs = sizes / sizes.sum()
        small = [
            n for n, k in zip(sampler.dataset.source_names, self.sampler.shard_sizes()) if k < batch_size
        ]
        if small and strategy != "proportional":
            raise UserError(f"sources {small} have fewer samples per rank than batch_size={batch_size}")

    def source_sequence(self, epoch: int) -> list[int]:
        """Which source each batch of ``epoch`` comes from (identical on every rank)."""
        per_source = [k // self.batch_size for k in self.sampler.shard_sizes()]
        n = sum(per_source)
        rng = np.random.default_rng([self.sampler.seed, epoch, 7919])
        if self.strategy == "proportional":
            seq = np.repeat(np.arange(len(per_source)), per_source)
            return rng.permutation(seq).tolist() if self.sampler.shuffle else seq.tolist()
        if self.strategy == "round_robin":
            return [i % len(per_source) for i in range(n)]
        return rng.choice(len(self.probs), size=n, p=self.probs).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.sampler.epoch
        shards = self.sampler.shards(epoch)
        cursor = [0] * len(shards)
        cycle = [0] * len(shards)
        for s in self.source_sequence(epoch):
            if cursor[s] + self.batch_size > len(shards[s]):
                cycle[s] += 1
                shards[s] = self.sampler.shards(epoch, cycle[s])[s]
                cursor[s] = 0
            yield shards[s][cursor[s] : cursor[s] + self.batch_size]
            cursor[s] += self.batch_size

    def __len__(self) -> int:
        return sum(k // self.batch_size for k in self.sampler.shard_sizes())
