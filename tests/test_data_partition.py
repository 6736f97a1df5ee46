"""Client partitions (IID, Dirichlet label skew) and the seeded per-round batch sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsim.data import batch_indices, dirichlet_partition, iid_partition, partition_dataset
from fedsim.errors import ConfigError

LABELS = np.repeat(np.arange(10), 200)  # 2,000 samples, balanced


def _assert_exact_cover(parts: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(parts)
    assert joined.dtype == np.int64
    assert joined.size == n and np.array_equal(np.sort(joined), np.arange(n))
    assert all(np.all(np.diff(part) > 0) for part in parts)  # sorted, no duplicates


def _mean_top_class_share(parts: list[np.ndarray]) -> float:
    return float(np.mean([np.bincount(LABELS[p], minlength=10).max() / p.size for p in parts]))


def test_iid_is_deterministic_balanced_and_covering() -> None:
    parts = iid_partition(1003, 10, seed=7)
    again = iid_partition(1003, 10, seed=7)
    other = iid_partition(1003, 10, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))
    assert sorted(p.size for p in parts) == [100] * 7 + [101] * 3
    _assert_exact_cover(parts, 1003)


def test_dirichlet_skew_follows_alpha() -> None:
    skewed = dirichlet_partition(LABELS, 20, alpha=0.1, seed=0)
    near_iid = dirichlet_partition(torch.from_numpy(LABELS), 20, alpha=1000.0, seed=0)
    _assert_exact_cover(skewed, LABELS.size)
    _assert_exact_cover(near_iid, LABELS.size)
    assert _mean_top_class_share(skewed) > 0.5
    assert _mean_top_class_share(near_iid) < 0.25


def test_dirichlet_is_deterministic_and_respects_minimum() -> None:
    parts = dirichlet_partition(LABELS, 50, alpha=0.05, seed=3, min_samples=30)
    again = partition_dataset(LABELS, 50, "dirichlet", 3, alpha=0.05, min_samples=30)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert min(p.size for p in parts) >= 30
    _assert_exact_cover(parts, LABELS.size)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(20, 300),
    clients=st.integers(1, 10),
    alpha=st.floats(0.01, 100.0),
    seed=st.integers(0, 2**32 - 1),
    min_samples=st.integers(0, 2),
)
def test_dirichlet_always_covers(
    n: int, clients: int, alpha: float, seed: int, min_samples: int
) -> None:
    labels = np.random.default_rng(seed).integers(0, 5, n)
    parts = dirichlet_partition(labels, clients, alpha, seed, min_samples=min_samples)
    assert len(parts) == clients and min(p.size for p in parts) >= min_samples
    _assert_exact_cover(parts, n)


def test_impossible_partitions_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="cannot give 30 clients at least 100 samples"):
        dirichlet_partition(LABELS, 30, 0.5, 0, min_samples=100)
    with pytest.raises(ConfigError, match="cannot give"):
        iid_partition(5, 6, 0)
    with pytest.raises(ConfigError, match="alpha must be positive"):
        dirichlet_partition(LABELS, 3, 0.0, 0)
    with pytest.raises(ConfigError, match="needs alpha"):
        partition_dataset(LABELS, 3, "dirichlet", 0)
    with pytest.raises(ConfigError, match="known: iid, dirichlet"):
        partition_dataset(LABELS, 3, "shards", 0)
    assert len(partition_dataset(LABELS, 4, "iid", 0)) == 4


def test_batch_indices_pure_and_within_partition() -> None:
    part = iid_partition(500, 5, seed=1)[2]
    batch = batch_indices(part, 8, seed=11, round=3, client_id=2)
    assert batch.dtype == np.int64 and batch.size == 8 and np.unique(batch).size == 8
    assert np.isin(batch, part).all()
    assert np.array_equal(batch, batch_indices(part.copy(), 8, 11, 3, 2))
    variants = [
        batch_indices(part, 8, 12, 3, 2),
        batch_indices(part, 8, 11, 4, 2),
        batch_indices(part, 8, 11, 3, 1),
        batch_indices(part, 8, 11, 3, 2, step=1),
    ]
    assert all(not np.array_equal(batch, v) for v in variants)
    assert np.array_equal(np.sort(batch_indices(part, part.size, 0, 0, 0)), part)


def test_batch_indices_errors() -> None:
    part = np.arange(10)
    with pytest.raises(ConfigError, match="batch_size 11 exceeds client 4's partition of 10"):
        batch_indices(part, 11, 0, 0, 4)
    with pytest.raises(ConfigError, match="batch_size must be at least 1"):
        batch_indices(part, 0, 0, 0, 0)
    with pytest.raises(ConfigError, match="round must be a non-negative integer"):
        batch_indices(part, 2, 0, -1, 0)
