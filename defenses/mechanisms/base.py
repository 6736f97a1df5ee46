"""The mechanism contract: what a defense does to the update, as a likelihood and its noise.

A client sends g ~ p(g | x) instead of the true gradient. The Bayes adversary
maximises log p(g_obs | ∇θ ℓ(x)) + log p(x), so every defense that perturbs the
update states `log_likelihood(observed, candidate)` up to an additive constant, and
states its additive noise explicitly — the distribution (`noise`), its scale
(`noise_scale`: σ for Gaussian, b for Laplacian, in the units of the observed update;
None where no noise is added) and whether that noise is all it does (`noise_only`).
Where the client clips each sample's gradient before averaging (DP-SGD), the mechanism
says so (`per_sample_clip`, C in gradient units): the clean update is then the mean of
the clipped per-sample gradients, and the adversary, who knows its candidate batch,
forms its candidates the same way.

This is the contract `attacks.likelihood.Likelihood` declares on the adversary's side
(`defenses` and `attacks` import torch alone, never each other): every mechanism
satisfies it structurally. Nothing has a default here; a subclass that does not state
all three is refused when it is constructed.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import torch

Update = Sequence[torch.Tensor]
"""An update as one tensor per model parameter, in `model.parameters()` order."""

NoiseKind = Literal["gaussian", "laplacian"]
"""The additive noise distributions a mechanism may state (as `attacks.likelihood`)."""


class Mechanism(ABC):
    """p(observed update | candidate clean update), batched over candidates.

    Subclasses (frozen dataclasses) state `noise`, `noise_scale` and `noise_only` as
    fields, class attributes or properties; `__post_init__` checks that they did.
    """

    name: str = "mechanism"
    noise: NoiseKind | None
    """Distribution of the additive noise per coordinate; None where none is added."""
    noise_scale: float | None
    """σ (Gaussian) or b (Laplacian) of that noise, in the observed update's units; None
    exactly where `noise` is None."""
    noise_only: bool
    """True where observed = candidate + noise and nothing else (no clip, mask, rounding),
    the candidate formed as `per_sample_clip` says."""
    per_sample_clip: float | None = None
    """C where the clean update is the mean of per-sample gradients each clipped to norm C
    (over all parameters, in gradient units); None where it is the batch's own update."""

    def __post_init__(self) -> None:
        check_stated_noise(self)

    @abstractmethod
    def log_likelihood(self, observed: Update, candidate: Update) -> torch.Tensor:
        """Log-likelihood up to a constant, one value per candidate.

        `observed[i]` has the shape of parameter i; `candidate[i]` has a leading
        candidate dimension N in front of it. Returns a tensor of shape (N,) that
        is differentiable with respect to `candidate`.
        """


def check_stated_noise(mechanism: Mechanism) -> None:
    """TypeError unless `mechanism` states its noise, scale and noise_only consistently."""
    name = type(mechanism).__name__
    missing = [m for m in ("noise", "noise_scale", "noise_only") if not hasattr(mechanism, m)]
    if missing:
        raise TypeError(f"{name} does not state {', '.join(missing)} (see Mechanism)")
    noise, scale = mechanism.noise, mechanism.noise_scale
    if noise not in (None, "gaussian", "laplacian"):
        raise TypeError(f"{name}.noise must be 'gaussian', 'laplacian' or None, got {noise!r}")
    if (noise is None) != (scale is None):
        raise TypeError(f"{name}: noise {noise!r} with noise_scale {scale!r}; both or neither")
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise TypeError(f"{name}.noise_scale must be finite and > 0, got {scale!r}")
    if mechanism.noise_only and noise is None:
        raise TypeError(f"{name} is noise_only but states no noise")
    clip = mechanism.per_sample_clip
    if clip is not None and not (math.isfinite(clip) and clip > 0):
        raise TypeError(f"{name}.per_sample_clip must be finite and > 0, got {clip!r}")


def flat_difference(observed: Update, candidate: Update) -> torch.Tensor:
    """(N, D) differences candidate − observed over all parameters, concatenated."""
    n = candidate[0].shape[0]
    return torch.cat(
        [(c - o.unsqueeze(0)).reshape(n, -1) for o, c in zip(observed, candidate, strict=True)],
        dim=1,
    )
