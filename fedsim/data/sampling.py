"""The seeded batch sampler: which samples a client trains on in a given round.

`batch_indices` is a pure function of its arguments. Its generator is seeded
from (seed, round, client, step) through `numpy.random.SeedSequence`, with a
fixed tag that keeps these streams apart from other seeded choices made from
the same scenario seed. Anyone who knows the scenario (the simulated auditor
scoring reconstructions against ground truth, a test) can recompute exactly
which samples a client used, without anything travelling over the federation.
"""

from __future__ import annotations

import numpy as np

from fedsim.errors import ConfigError

# Distinguishes batch sampling from other streams derived from the scenario seed.
_BATCH_STREAM_TAG = 0xBA7C


def batch_indices(
    partition_indices: np.ndarray,
    batch_size: int,
    seed: int,
    round: int,
    client_id: int,
    *,
    step: int = 0,
) -> np.ndarray:
    """`batch_size` distinct data-set indices drawn from one client's partition.

    `step` numbers the local steps within a round (FedAvg); FedSGD uses step 0.
    The result keeps the order of the draw, as an int64 array.
    """
    indices = np.asarray(partition_indices, dtype=np.int64).reshape(-1)
    for name, value in (("seed", seed), ("round", round), ("client_id", client_id), ("step", step)):
        if int(value) != value or value < 0:
            raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if batch_size > indices.size:
        raise ConfigError(
            f"batch_size {batch_size} exceeds client {client_id}'s partition of {indices.size} samples"
        )
    entropy = [int(seed), _BATCH_STREAM_TAG, int(round), int(client_id), int(step)]
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    return indices[rng.choice(indices.size, size=batch_size, replace=False)]
