"""Likelihoods for pruned updates: a fixed public mask (the paper's), or a fresh random one.

**Fixed mask** (`FixedMaskMechanism`, the defense of Balunović et al.'s code,
``soft_gaussian_pruning`` / ``soft_pruning``): one Bernoulli mask m, drawn once and
known to the adversary, prunes each coordinate with probability p; noise is then added
to every coordinate, pruned ones included: g = m ⊙ c + n, so

    log p(g | c) = Σ_i log f(g_i − m_i c_i),

with f the noise density — exact. Without noise the likelihood is a point mass at
m ⊙ c; −½‖g − m ⊙ c‖², its Gaussian limit, has the same argmax (a heuristic scale).

**Random mask** (`MaskedMechanism`): a fresh mask per update (keep with probability
1 − p) followed by noise on the kept coordinates leaves the pruned coordinates exactly
zero, so the observed update reveals the mask: a coordinate is kept where it is non-zero
(almost surely, once noise is added). Given the mask, the pruned coordinates carry no
information about the clean update and the kept ones are clean + noise, so

    log p(g | c) = log P(mask) + Σ_kept log p_noise(g_i − c_i),

and P(mask) does not depend on the candidate. Without noise the kept coordinates are
copied exactly; ``noise=None`` uses −½‖g_K − c_K‖² as above (only the argmax is exact).
Top-k magnitude pruning is deterministic; the same kept-coordinate comparison is a
heuristic likelihood for it as well. A fresh mask followed by noise on every coordinate
is a per-coordinate mixture (`PruneNoiseMixtureMechanism`).
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from defenses.mechanisms.base import Mechanism, NoiseKind, Update, flat_difference


def kept_mask(observed: Update) -> torch.Tensor:
    """(D,) float mask of the observed update's non-zero coordinates, all parameters concatenated."""
    return torch.cat([(o.reshape(-1) != 0).to(o.dtype) for o in observed])


def fixed_mask(like: torch.Tensor, prune: float, seed: int) -> torch.Tensor:
    """The fixed mask of a tensor shaped like `like`: 0 (pruned) with probability `prune`.

    Drawn from (seed, the tensor's shape) alone, so the client's defense and the
    adversary's likelihood agree on it whichever subset of tensors each sees (a Flower
    mod also sees float buffers; a weighted attack splits the parameters). Tensors of
    one shape share their pattern; the mask is public either way.
    """
    mask = _cpu_mask(tuple(like.shape), float(prune), int(seed))
    return _placed(mask, like.device, like.dtype)


@functools.lru_cache(maxsize=256)
def _cpu_mask(shape: tuple[int, ...], prune: float, seed: int) -> torch.Tensor:
    key = hashlib.sha256(f"fixed-mask:{seed}:{shape}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") >> 1)
    return (torch.rand(shape, generator=generator, dtype=torch.float64) >= prune).float()


@functools.lru_cache(maxsize=256)
def _placed(mask: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return mask.to(device=device, dtype=dtype)


@dataclass(frozen=True)
class FixedMaskMechanism(Mechanism):
    """g = m ⊙ c + noise, m the public fixed mask (`fixed_mask`): the paper's soft pruning.

    ``noise="gaussian"``: −‖g − m ⊙ c‖² / (2 scale²); ``"laplacian"``: −‖g − m ⊙ c‖₁ / scale;
    ``None`` (no scale): −½‖g − m ⊙ c‖² (no noise; see the module note).
    """

    prune: float
    seed: int
    noise: NoiseKind | None
    scale: float | None = None
    name: str = "fixed-mask"
    noise_only: ClassVar[bool] = False

    @property
    def noise_scale(self) -> float | None:
        return self.scale

    def log_likelihood(self, observed: Update, candidate: Update) -> torch.Tensor:
        masked = [
            c * fixed_mask(o, self.prune, self.seed).unsqueeze(0)
            for o, c in zip(observed, candidate, strict=True)
        ]
        diff = flat_difference(observed, masked)
        if self.noise == "laplacian":
            return -diff.abs().sum(dim=1) / self.scale
        scale = 1.0 if self.scale is None else self.scale
        return -diff.pow(2).sum(dim=1) / (2 * scale**2)


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
    """A fresh random mask (keep probability `keep`), then noise on every coordinate.

    The mask is hidden by the noise, so each coordinate is a two-component mixture:
    p(g_i | c_i) = (1 − p)·f(g_i) + p·f(g_i − c_i), with f the noise density. This is
    what `random-prune` followed by `gaussian` or `laplacian` in a composition does.
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
