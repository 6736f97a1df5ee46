"""Candidate updates: the update each candidate batch would have produced, for N candidates at once.

The attack objective compares the observed update with ∇θ ℓ(x_n, y_n) for every candidate
n = 1..N (each a batch of B images), and is then differentiated with respect to x: a
second-order gradient. Two routes compute the candidate updates, both differentiable:

- `ActivationUpdates` (fast, `attacks.updates.fast`): one forward pass of all N·B
  images, the backpropagated signals of every layer, and each candidate's weight
  gradient formed from layer inputs and signals, with the layers swapped for versions
  that keep candidates apart or run faster (`batch_norm`, `avg_pool`; Linear gradients
  kept as factors, `candidates.LinearFactors`).
- `VmapUpdates` (generic, `attacks.updates.vmap`): `torch.func.vmap` over candidates of
  `torch.func.grad`; any model, and FedAvg's local steps unrolled. With a per-sample
  clip the generic route is `PerSampleClippedUpdates` (`attacks.updates.per_sample`).

`build_updates` (`attacks.updates.selection`) picks the fast route when the model's
parameters all live in supported layers and a float64 probe agrees with the generic
route; else the generic one. Where the fast route's time goes, and the measurements
behind its choices, are in EXPERIMENTS.md §6.
"""

from __future__ import annotations

from attacks.updates.candidates import CandidateUpdates, LinearFactors, UpdateFunction
from attacks.updates.fast import ActivationUpdates
from attacks.updates.per_sample import PerSampleClippedUpdates
from attacks.updates.selection import PROBE_CLIP, PROBE_TOLERANCE, Route, build_updates
from attacks.updates.vmap import VmapUpdates

__all__ = [
    "PROBE_CLIP",
    "PROBE_TOLERANCE",
    "ActivationUpdates",
    "CandidateUpdates",
    "LinearFactors",
    "PerSampleClippedUpdates",
    "Route",
    "UpdateFunction",
    "VmapUpdates",
    "build_updates",
]
