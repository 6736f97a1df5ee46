"""Likelihoods for compressed updates: stochastic k-bit quantisation and sign compression."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from defenses.mechanisms.base import Mechanism, Update


def quantization_step(observed: torch.Tensor, levels: int) -> torch.Tensor:
    """The cell width Δ of one observed tensor: its grid runs from its min to its max.

    The clean tensor's minimum and maximum lie on the grid's end points and are
    copied exactly by stochastic rounding, so the observed tensor reveals the grid.
    """
    span = observed.max() - observed.min()
    return (span / (levels - 1)).clamp_min(torch.finfo(observed.dtype).tiny)


@dataclass(frozen=True)
class StochasticQuantizationMechanism(Mechanism):
    """Unbiased stochastic rounding to a per-tensor grid of 2^bits levels.

    A clean value c inside the cell [q, q + Δ] is rounded up with probability
    (c − q)/Δ, so an observed grid value g has probability max(0, 1 − |g − c|/Δ):
    linear inside the two neighbouring cells, zero outside. The log of that is −inf
    outside; to keep a gradient there, values with 1 − |g − c|/Δ below `floor` get
    log(floor) minus a linear penalty (|g − c|/Δ − 1 + floor)/floor — exact inside,
    a steep, continuous penalty outside.
    """

    bits: int
    floor: float = 1e-3
    name: str = "stochastic-quantization"
    noise: ClassVar[None] = None  # rounding, not additive noise
    noise_scale: ClassVar[None] = None
    noise_only: ClassVar[bool] = False

    def log_likelihood(self, observed: Update, candidate: Update) -> torch.Tensor:
        levels = 2**self.bits
        total = None
        for o, c in zip(observed, candidate, strict=True):
            n = c.shape[0]
            step = quantization_step(o, levels)
            t = ((c - o.unsqueeze(0)).abs() / step).reshape(n, -1)
            inside = torch.log((1 - t).clamp_min(self.floor))
            outside = (t - 1 + self.floor).clamp_min(0) / self.floor
            term = (inside - outside).sum(dim=1)
            total = term if total is None else total + term
        assert total is not None
        return total


@dataclass(frozen=True)
class SignMechanism(Mechanism):
    """signSGD: g = sign(c). A heuristic likelihood, since the map is deterministic.

    Σ log σ(g_i · c_i / (τ · rms(c))) per tensor: agreement of signs, softened by a
    temperature τ relative to the candidate's own scale so that the sign of every
    coordinate, not its magnitude, drives the objective.
    """

    temperature: float = 0.1
    name: str = "sign"
    noise: ClassVar[None] = None  # a deterministic map, no noise
    noise_scale: ClassVar[None] = None
    noise_only: ClassVar[bool] = False

    def log_likelihood(self, observed: Update, candidate: Update) -> torch.Tensor:
        total = None
        for o, c in zip(observed, candidate, strict=True):
            n = c.shape[0]
            flat = c.reshape(n, -1)
            rms = flat.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-12)
            agree = o.reshape(1, -1) * flat / (self.temperature * rms)
            term = torch.nn.functional.logsigmoid(agree).sum(dim=1)
            total = term if total is None else total + term
        assert total is not None
        return total
