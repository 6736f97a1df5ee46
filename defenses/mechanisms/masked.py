"""Likelihoods for pruned updates: compare only the coordinates the observed update kept.

Random pruning (keep each coordinate with probability p, a fresh mask per update)
followed by noise on the kept coordinates leaves the pruned coordinates exactly zero,
so the observed update reveals the mask: a coordinate is kept where it is non-zero
(almost surely, once noise is added). Given the mask, the pruned coordinates carry
no information about the clean update and the kept ones are clean + noise, so

    log p(g | c) = log P(mask) + Σ_kept log p_noise(g_i − c_i),

and P(mask) does not depend on the candidate. Without noise the kept coordinates are
copied exactly; the likelihood is then a point mass, and `MaskedMechanism` with
``noise=None`` uses the limit of the Gaussian case, −½‖g_K − c_K‖², a heuristic
scale (only the argmax is exact). Top-k magnitude pruning is deterministic; the same
kept-coordinate comparison is a heuristic likelihood for it as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from defenses.mechanisms.base import Mechanism, NoiseKind, Update, flat_difference


def kept_mask(observed: Update) -> torch.Tensor:
    """(D,) float mask of the observed update's non-zero coordinates, all parameters concatenated."""
    return torch.cat([(o.reshape(-1) != 0).to(o.dtype) for o in observed])


@dataclass(frozen=True)
class MaskedMechanism(Mechanism):
    """Prune then noise on the kept coordinates: likelihood over the observed non-zeros.

    ``noise="gaussian"``: −Σ_K (g − c)² / (2 scale²); ``"laplacian"``: −Σ_K |g − c| / scale;
    ``None`` (and no scale): −½ Σ_K (g − c)² (no noise; see the module note).
    """

    noise: NoiseKind | None
    scale: float | None = None
    name: str = "masked"
    noise_only: ClassVar[bool] = False

    @property
    def noise_scale(self) -> float | None:
        return self.scale

    def log_likelihood(self, observed: Update, candidate: Update) -> torch.Tensor:
        diff = flat_difference(observed, candidate) * kept_mask(observed).unsqueeze(0)
        if self.noise == "laplacian":
            return -diff.abs().sum(dim=1) / self.scale
        scale = 1.0 if self.scale is None else self.scale
        return -diff.pow(2).sum(dim=1) / (2 * scale**2)


@dataclass(frozen=True)
class PruneNoiseMixtureMechanism(Mechanism):
    """Prune (keep probability p), then noise on every coordinate, pruned ones included.

    The mask is hidden by the noise, so each coordinate is a two-component mixture:
    p(g_i | c_i) = (1 − p)·f(g_i) + p·f(g_i − c_i), with f the noise density. This is
    what `prune` followed by `gaussian` or `laplacian` in a composition does.
    """

    keep: float
    noise: NoiseKind
    scale: float
    name: str = "prune-noise-mixture"
    noise_only: ClassVar[bool] = False

    @property
    def noise_scale(self) -> float:
        return self.scale

    def _log_density(self, value: torch.Tensor) -> torch.Tensor:
        if self.noise == "laplacian":
            return -value.abs() / self.scale - math.log(2 * self.scale)
        return -value.pow(2) / (2 * self.scale**2) - 0.5 * math.log(2 * math.pi * self.scale**2)

    def log_likelihood(self, observed: Update, candidate: Update) -> torch.Tensor:
        diff = flat_difference(observed, candidate)
        obs = torch.cat([o.reshape(-1) for o in observed]).unsqueeze(0)
        kept = math.log(self.keep) + self._log_density(diff)
        if self.keep >= 1.0:
            return kept.sum(dim=1)
        pruned = math.log1p(-self.keep) + self._log_density(obs).expand_as(diff)
        return torch.logaddexp(kept, pruned).sum(dim=1)
