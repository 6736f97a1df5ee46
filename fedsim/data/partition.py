"""Splitting a data set across clients, deterministically from a seed.

Each partitioner returns one sorted int64 index array per client; the arrays
are disjoint and together cover every sample. The same arguments always give
the same partition, so the auditor can rebuild any client's data from the
scenario alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fedsim.errors import ConfigError

Partition = list[np.ndarray]


def _check_counts(num_samples: int, num_clients: int, min_samples: int) -> None:
    if num_clients < 1:
        raise ConfigError(f"num_clients must be at least 1, got {num_clients}")
    if min_samples < 0:
        raise ConfigError(f"min_samples must be non-negative, got {min_samples}")
    if num_samples < num_clients * min_samples:
        raise ConfigError(
            f"cannot give {num_clients} clients at least {min_samples} samples each from "
            f"{num_samples} samples; use fewer clients, a smaller minimum or more data"
        )


def iid_partition(
    num_samples: int, num_clients: int, seed: int, *, min_samples: int = 1
) -> Partition:
    """Shuffle all indices and cut them into `num_clients` parts whose sizes differ by at most one."""
    _check_counts(num_samples, num_clients, min_samples)
    order = np.random.default_rng(seed).permutation(num_samples)
    return [np.sort(part).astype(np.int64) for part in np.array_split(order, num_clients)]


def dirichlet_partition(
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    num_clients: int,
    alpha: float,
    seed: int,
    *,
    min_samples: int = 1,
) -> Partition:
    """Label-skewed split: each class is shared among clients in Dirichlet(`alpha`) proportions.

    Small `alpha` gives each client few classes; large `alpha` approaches IID.
    Clients left with fewer than `min_samples` are then topped up with random
    samples taken from the largest client, so the minimum always holds when the
    data set is large enough (a `ConfigError` says so when it is not).
    """
    label_array = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(
        -1
    )
    if not alpha > 0:
        raise ConfigError(f"Dirichlet alpha must be positive, got {alpha}")
    _check_counts(label_array.size, num_clients, min_samples)
    rng = np.random.default_rng(seed)
    shares: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for cls in np.unique(label_array):
        members = rng.permutation(np.flatnonzero(label_array == cls))
        proportions = rng.dirichlet(np.full(num_clients, float(alpha)))
        cuts = (np.cumsum(proportions)[:-1] * members.size).astype(np.int64)
        for client, part in enumerate(np.split(members, cuts)):
            shares[client].append(part)
    clients = [np.concatenate(parts) if parts else np.empty(0, np.int64) for parts in shares]
    _top_up(clients, min_samples, rng)
    return [np.sort(part).astype(np.int64) for part in clients]


def _top_up(clients: list[np.ndarray], min_samples: int, rng: np.random.Generator) -> None:
    """Move random samples from the largest clients to those below `min_samples`, in place."""
    for client in range(len(clients)):
        while clients[client].size < min_samples:
            donor = int(np.argmax([part.size for part in clients]))
            count = min(min_samples - clients[client].size, clients[donor].size - min_samples)
            taken = rng.choice(clients[donor].size, size=count, replace=False)
            keep = np.ones(clients[donor].size, dtype=bool)
            keep[taken] = False
            clients[client] = np.concatenate([clients[client], clients[donor][taken]])
            clients[donor] = clients[donor][keep]


#: Partition scheme names a scenario may use.
PARTITION_SCHEMES = ("iid", "dirichlet")


def partition_dataset(
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    num_clients: int,
    scheme: str,
    seed: int,
    *,
    alpha: float | None = None,
    min_samples: int = 1,
) -> Partition:
    """Partition by scheme name ('iid' or 'dirichlet'; the latter needs `alpha`)."""
    if scheme not in PARTITION_SCHEMES:
        known = ", ".join(PARTITION_SCHEMES)
        raise ConfigError(f"unknown partition scheme {scheme!r}; known: {known}")
    if scheme == "dirichlet":
        if alpha is None:
            raise ConfigError("the 'dirichlet' partition needs alpha")
        return dirichlet_partition(labels, num_clients, alpha, seed, min_samples=min_samples)
    return iid_partition(len(labels), num_clients, seed, min_samples=min_samples)
