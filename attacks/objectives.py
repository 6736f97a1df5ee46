"""Data terms: how far a candidate's update is from the observed one; name → class table.

Every objective maps N candidate updates to N values (lower is better) and is
differentiable with respect to them. `likelihood` is the Bayes adversary's term,
−log p(observed | candidate), taken from the defense's mechanism; the others are the
heuristic distances of the attacks the Bayesian framework explains (DLG: L2, Inverting
Gradients: cosine).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attacks.errors import AttackError
from attacks.updates import CandidateUpdates, LinearFactors


@dataclass
class ObservedGroup:
    """Candidates `start:stop` all reconstruct one target, observed update `update`."""

    start: int
    stop: int
    update: list[torch.Tensor]
    mechanism: object | None


@dataclass
class Observed:
    """The observed updates, expanded to one per candidate, and grouped by target."""

    per_candidate: list[torch.Tensor]
    groups: list[ObservedGroup]

    def __post_init__(self) -> None:
        self._sq_norms: dict[int, torch.Tensor] = {}

    def sq_norm(self, o: torch.Tensor) -> torch.Tensor:
        """(N,) ‖o_n‖², cached: observed updates are constants of the optimisation."""
        key = id(o)
        if key not in self._sq_norms:
            self._sq_norms[key] = o.reshape(o.shape[0], -1).square().sum(1)
        return self._sq_norms[key]

    def select(self, start: int, stop: int) -> Observed:
        """Candidates start:stop, as one group."""
        if start == 0 and stop == self.per_candidate[0].shape[0]:
            return self
        return Observed([o[start:stop] for o in self.per_candidate], [])


def _per_candidate_sum(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).sum(dim=1)


class Objective(ABC):
    """A data term: (candidate updates, observed) → (N,) values to minimise."""

    name: str = "objective"

    @abstractmethod
    def __call__(self, candidate: CandidateUpdates, observed: Observed) -> torch.Tensor: ...


class L2Distance(Objective):
    """Σ ‖g − g_obs‖² over all parameters (DLG; Gaussian likelihood up to scale)."""

    name = "l2"

    def __call__(self, candidate: CandidateUpdates, observed: Observed) -> torch.Tensor:
        total = 0
        for c, o in zip(candidate.parts, observed.per_candidate, strict=True):
            if isinstance(c, LinearFactors):
                # ‖W − G‖² = ‖W‖² − 2⟨W, G⟩ + ‖G‖² without materialising W
                total = total + c.sq_norm() - 2 * c.dot(o) + observed.sq_norm(o)
            else:
                # mse_loss is one fused kernel forward and backward
                total = total + _per_candidate_sum(F.mse_loss(c, o, reduction="none"))
        return total


class L1Distance(Objective):
    """Σ |g − g_obs| over all parameters (Laplacian likelihood up to scale)."""

    name = "l1"

    def __call__(self, candidate: CandidateUpdates, observed: Observed) -> torch.Tensor:
        return sum(
            _per_candidate_sum(F.l1_loss(c, o, reduction="none"))
            for c, o in zip(candidate.updates, observed.per_candidate, strict=True)
        )


class CosineDistance(Objective):
    """1 − ⟨g, g_obs⟩ / (‖g‖ ‖g_obs‖) over all parameters at once (Inverting Gradients)."""

    name = "cos"

    def __call__(self, candidate: CandidateUpdates, observed: Observed) -> torch.Tensor:
        dot, c_norm, o_norm = 0, 0, 0
        for c, o in zip(candidate.parts, observed.per_candidate, strict=True):
            if isinstance(c, LinearFactors):
                dot, c_norm = dot + c.dot(o), c_norm + c.sq_norm()
            else:
                dot, c_norm = dot + _per_candidate_sum(c * o), c_norm + _per_candidate_sum(c * c)
            o_norm = o_norm + observed.sq_norm(o)
        return 1.0 - dot / (c_norm.add(1e-12).sqrt() * o_norm.add(1e-12).sqrt())


def _is_gaussian(mechanism: object | None) -> bool:
    """Isotropic Gaussian noise N(0, σ²I) (defenses.mechanisms.GaussianMechanism), by duck type."""
    return type(mechanism).__name__ == "GaussianMechanism" and isinstance(
        getattr(mechanism, "sigma", None), float | int
    )


class NegativeLogLikelihood(Objective):
    """−log p(g_obs | g) from each target's mechanism; Gaussian σ = 1 (½‖·‖²) without one.

    Isotropic Gaussian mechanisms are evaluated as ‖·‖²/(2σ²) through `L2Distance`, which
    avoids materialising large layers; every other mechanism gets materialised updates.
    """

    name = "likelihood"

    def __call__(self, candidate: CandidateUpdates, observed: Observed) -> torch.Tensor:
        parts = []
        for g in observed.groups:
            sub = candidate.select(g.start, g.stop)
            if g.mechanism is None or _is_gaussian(g.mechanism):
                sigma = 1.0 if g.mechanism is None else float(g.mechanism.sigma)
                parts.append(L2Distance()(sub, observed.select(g.start, g.stop)) / (2 * sigma**2))
            else:
                parts.append(-g.mechanism.log_likelihood(g.update, sub.updates))
        return torch.cat(parts)


OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (L2Distance, L1Distance, CosineDistance, NegativeLogLikelihood)
}


def build_objective(name: str) -> Objective:
    """The objective called `name`; an AttackError lists the known names otherwise."""
    try:
        return OBJECTIVES[name]()
    except KeyError:
        raise AttackError(
            f"objective: unknown name {name!r}; choose one of {', '.join(sorted(OBJECTIVES))}"
        ) from None
