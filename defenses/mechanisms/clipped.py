"""Clipped updates: with Gaussian noise (DP-SGD, Abadi et al., CCS 2016; Flower's
`LocalDpMod`), or clipped only (Flower's `fixedclipping_mod`, whose noise the server adds
to the aggregate after it has seen each update)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from defenses.mechanisms.base import Mechanism, NoiseKind, Update, flat_difference


@dataclass(frozen=True)
class ClippedGaussianMechanism(Mechanism):
    """g = clip(c) + N(0, std² I): an update clipped to norm `clip`, then Gaussian noise.

    Flower's `LocalDpMod` clips the whole update: the candidate is clipped as a whole,
    exact. DP-SGD clips every per-sample gradient to norm C, averages and adds noise of
    std σ·C/B (`per_sample_clip` = C): the clean update is the mean of the clipped
    per-sample gradients, which the adversary forms from its candidate batch (it knows
    it). That mean has norm at most C (lr·C as a FedAvg delta: `clip`), so clipping it
    again changes nothing and the likelihood is exact at every batch size.
    """

    clip: float
    std: float
    per_sample_clip: float | None = None
    name: str = "clipped-gaussian"
    noise: ClassVar[NoiseKind] = "gaussian"

    @property
    def noise_scale(self) -> float:
        return self.std

    @property
    def noise_only(self) -> bool:
        """True with `per_sample_clip`: the candidate, formed as it says, is what the noise
        is added to; the whole-update clip then changes nothing."""
        return self.per_sample_clip is not None

    def clip_candidates(self, candidate: Update) -> list[torch.Tensor]:
        """Each candidate rescaled to norm at most C over all parameters together."""
        return clip_candidates(candidate, self.clip)

    def log_likelihood(self, observed: Update, candidate: Update) -> torch.Tensor:
        diff = flat_difference(observed, self.clip_candidates(candidate))
        return -diff.pow(2).sum(dim=1) / (2 * self.std**2)


FLAT_CLIP_EPSILON = 1e-12
"""Added to the norm of a whole update before dividing (the clip of Flower's mods)."""

CLIP_EPSILON = 1e-6
"""Added to a per-sample gradient's norm before dividing: DP-SGD's client
(`defenses.dpsgd.clip_per_sample`) and the attack's clip of its candidate samples
(`attacks.clipping`), which must agree."""


def clip_rows(tensors: Sequence[torch.Tensor], clip: float, epsilon: float) -> list[torch.Tensor]:
    """Row i (the leading index) of `tensors`, over all of them together, times
    min(1, C / (‖row i‖ + ε)): rescaled to norm at most C. The one clip of `defenses`:
    candidate updates (ε = `FLAT_CLIP_EPSILON`) and DP-SGD's per-sample gradients
    (`defenses.dpsgd.clip_per_sample`); `attacks.clipping` clips from squared norms, as
    its fast route forms them, with the same `CLIP_EPSILON`."""
    n = tensors[0].shape[0]
    norms = torch.cat([t.reshape(n, -1) for t in tensors], dim=1).norm(dim=1)
    factor = (clip / (norms + epsilon)).clamp(max=1.0)
    return [t * factor.view(n, *([1] * (t.dim() - 1))) for t in tensors]


def clip_candidates(candidate: Update, clip: float) -> list[torch.Tensor]:
    """Each candidate rescaled to norm at most `clip` over all parameters together
    (Flower's `clip_inputs_inplace`, McMahan et al.'s flat clipping)."""
    return clip_rows(candidate, clip, FLAT_CLIP_EPSILON)


@dataclass(frozen=True)
class ClippingMechanism(Mechanism):
    """g = clip_C(c), no noise: the update rescaled to norm at most C.

    Deterministic, so the likelihood is a point mass at clip_C(c); −½‖g − clip_C(c)‖²
    is its Gaussian limit with a heuristic scale (only the argmax is exact). The
    candidate is clipped as a whole, as Flower's clipping mods clip the whole update.
    """

    clip: float
    name: str = "clipping"
    noise: ClassVar[NoiseKind | None] = None
    noise_scale: ClassVar[float | None] = None
    noise_only: ClassVar[bool] = False

    def log_likelihood(self, observed: Update, candidate: Update) -> torch.Tensor:
        diff = flat_difference(observed, clip_candidates(candidate, self.clip))
        return -0.5 * diff.pow(2).sum(dim=1)
