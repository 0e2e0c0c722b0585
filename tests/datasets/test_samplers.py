"""Homogeneous multi-source batches: strategies, DDP sharding, determinism."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from multitask_vision.datasets.samplers import MultiSourceBatchSampler, MultiSourceSampler
from multitask_vision.utils.errors import UserError


class FakeMultiSource:
    """Just the index bookkeeping of MultiSourceDataset."""

    def __init__(self, sizes):
        self.source_sizes = list(sizes)
        self.source_names = [f"s{i}" for i in range(len(sizes))]
        self.cumulative_sizes = list(np.cumsum(sizes))

    def source_of(self, idx):
        return int(np.searchsorted(self.cumulative_sizes, idx, side="right"))

    def __len__(self):
        return self.cumulative_sizes[-1]


def make(sizes, strategy="proportional", bs=4, rank=0, world=1, seed=3, **kw):
    sampler = MultiSourceSampler(FakeMultiSource(sizes), shuffle=True, seed=seed)
    sampler.rank, sampler.world_size = rank, world
    return MultiSourceBatchSampler(sampler, batch_size=bs, strategy=strategy, **kw)


def source_counts(bs_, epochs=1):
    ds = bs_.sampler.dataset
    counts = collections.Counter()
    for e in range(epochs):
        bs_.sampler.set_epoch(e)
        for batch in bs_:
            srcs = {ds.source_of(i) for i in batch}
            assert len(srcs) == 1, f"batch mixes sources {srcs}"
            assert len(batch) == bs_.batch_size
            counts[srcs.pop()] += 1
    return counts


def test_proportional_covers_every_sample_once():
    b = make([40, 120])
    seen = [i for batch in b for i in batch]
    assert sorted(seen) == list(range(160))
    assert len(b) == 40


@pytest.mark.parametrize(
    "strategy, kw, expected",
    [
        ("proportional", {}, [0.1, 0.9]),
        ("round_robin", {}, [0.5, 0.5]),
        ("weighted", {"weights": [3, 1]}, [0.75, 0.25]),
        ("temperature", {"temperature": 2.0}, [1 / 4, 3 / 4]),  # sqrt(100)=10 : sqrt(900)=30
    ],
)
def test_strategy_frequencies(strategy, kw, expected):
    b = make([100, 900], strategy, **kw)
    counts = source_counts(b, epochs=20)
    total = sum(counts.values())
    freqs = [counts[s] / total for s in range(2)]
    np.testing.assert_allclose(freqs, expected, atol=0.02)


def test_ddp_ranks_disjoint_and_same_source_per_step():
    world = 3
    samplers = [make([30, 61], "round_robin", bs=2, rank=r, world=world) for r in range(world)]
    per_rank = [list(s) for s in samplers]
    assert len({len(p) for p in per_rank}) == 1
    # every step: all ranks draw from the same source (same heads run on every rank)
    ds = samplers[0].sampler.dataset
    for step in zip(*per_rank):
        assert len({ds.source_of(b[0]) for b in step}) == 1
    # within one pass over a source, ranks never share a sample
    shards = [s.sampler.shards() for s in samplers]
    for src in range(2):
        sets = [set(sh[src]) for sh in shards]
        union = set().union(*sets)
        assert sum(len(x) for x in sets) - len(union) <= world  # only the wrap-around padding repeats
        assert union == set(range(0, 30)) if src == 0 else union == set(range(30, 91))


def test_seeded_and_epoch_dependent():
    a, b = make([50, 50], "temperature", temperature=1.0), make([50, 50], "temperature", temperature=1.0)
    assert list(a) == list(b)
    a.sampler.set_epoch(1)
    assert list(a) != list(b)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(strategy="nope"), "choose one of"),
        (dict(strategy="weighted"), "weights is required"),
        (dict(strategy="proportional", weights=[1, 1]), "only used by"),
        (dict(strategy="weighted", weights=[1]), "one per source"),
        (dict(strategy="temperature", temperature=0.0), "must be > 0"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises(UserError, match=match):
        make([10, 10], **kw)


def test_needs_multi_source_sampler():
    from torch.utils.data import SequentialSampler

    with pytest.raises(UserError, match="MultiSourceSampler"):  # a config mistake: one line from train.py
        MultiSourceBatchSampler(SequentialSampler(range(4)), batch_size=2)
