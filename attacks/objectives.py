"""Data terms: how far a candidate's update is from the observed one; their registry.

Every objective maps N candidate updates to N values (lower is better) and is
differentiable with respect to them. `likelihood` is the Bayes adversary's term,
−log p(observed | candidate), taken from the defense's mechanism; the others are the
heuristic distances of the attacks the Bayesian framework explains (DLG: L2, Inverting
Gradients: cosine).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F

from attacks.errors import AttackError
from attacks.likelihood import Likelihood, gaussian_sigma
from attacks.lookup import Registry
from attacks.updates import CandidateUpdates, LinearFactors


@dataclass
class ObservedGroup:
    """Candidates `start:stop` all reconstruct one target, observed update `update`."""

    start: int
    stop: int
    update: list[torch.Tensor]
    mechanism: Likelihood | None


@dataclass
class Observed:
    """The observed updates, expanded to one per candidate, and grouped by target.

    `weights` holds one non-negative weight per parameter (None: all 1), how much that
    parameter's update counts in the data term; 0 drops it (e.g. a layer a defense
    changed heuristically, which an adapted attack ignores). Every objective honours it.
    """

    per_candidate: list[torch.Tensor]
    groups: list[ObservedGroup]
    weights: list[float] | None = None

    def __post_init__(self) -> None:
        self._sq_norms: dict[int, torch.Tensor] = {}
        if self.weights is not None and len(self.weights) != len(self.per_candidate):
            raise AttackError(
                f"parameter weights: {len(self.weights)} for {len(self.per_candidate)} parameters"
            )

    def weighted(self, parts: list) -> list[tuple[float, object, torch.Tensor]]:
        """(weight, candidate part, observed) per parameter, zero-weight parameters left out."""
        weights = self.weights or [1.0] * len(self.per_candidate)
        return [
            (w, c, o)
            for w, c, o in zip(weights, parts, self.per_candidate, strict=True)
            if w != 0.0
        ]

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
        return Observed([o[start:stop] for o in self.per_candidate], [], self.weights)


def _per_candidate_sum(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).sum(dim=1)


def _materialized(part: torch.Tensor | LinearFactors) -> torch.Tensor:
    return part.materialize() if isinstance(part, LinearFactors) else part


def inner(c: torch.Tensor | LinearFactors, o: torch.Tensor) -> torch.Tensor:
    """(N,) ⟨c_n, o_n⟩ of one parameter's candidate part and observed update."""
    return c.dot(o) if isinstance(c, LinearFactors) else _per_candidate_sum(c * o)


def sq_norm(c: torch.Tensor | LinearFactors) -> torch.Tensor:
    """(N,) ‖c_n‖² of one parameter's candidate part (factors are never materialised)."""
    return c.sq_norm() if isinstance(c, LinearFactors) else _per_candidate_sum(c * c)


def layer_sums(
    candidate: CandidateUpdates,
    observed: Observed,
    terms: Callable[[torch.Tensor | LinearFactors, torch.Tensor], Sequence[torch.Tensor]],
    weighted: Sequence[bool] = (True,),
) -> list[torch.Tensor]:
    """[Σ_k w_k · terms(c_k, o_k)[i] for each i] over the parameters k the data term keeps
    (`Observed.weighted`); a term whose `weighted` entry is False is summed with weight 1."""
    totals: list = [0] * len(weighted)
    for w, c, o in observed.weighted(candidate.parts):
        for i, (value, scaled) in enumerate(zip(terms(c, o), weighted, strict=True)):
            totals[i] = totals[i] + (w * value if scaled and w != 1.0 else value)
    return totals


class Objective(ABC):
    """A data term: (candidate updates, observed) → (N,) values to minimise.

    `options` names the class attributes `build_objective(name, **options)` may set on an
    instance (as breaching passes its objective table as keyword arguments); others are
    refused."""

    name: str = "objective"
    options: tuple[str, ...] = ()

    def __init__(self, **options: object) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise AttackError(
                f"objective {self.name!r}: unknown option {', '.join(unknown)}; "
                f"valid: {', '.join(sorted(self.options)) or 'none'}"
            )
        for key, value in options.items():
            setattr(self, key, value)

    @abstractmethod
    def __call__(self, candidate: CandidateUpdates, observed: Observed) -> torch.Tensor: ...


_REGISTRY: Registry = Registry(
    "objective",
    lambda cls: issubclass(cls, Objective),
    "a subclass of attacks.objectives.Objective",
)
OBJECTIVES = _REGISTRY.entries
"""Every registered objective by name, in the order registered (a read-only view)."""

ObjectiveClass = TypeVar("ObjectiveClass", bound=type[Objective])


def register_objective(cls: ObjectiveClass) -> ObjectiveClass:
    """Register the Objective subclass `cls` under its `name` (a class decorator); from
    then on an attack's `objective` may name it."""
    return _REGISTRY.register(cls)


@register_objective
class L2Distance(Objective):
    """Σ_k w_k ‖g_k − g_obs,k‖² over parameters k (DLG; Gaussian likelihood up to scale)."""

    name = "l2"

    def __call__(self, candidate: CandidateUpdates, observed: Observed) -> torch.Tensor:
        def term(c: torch.Tensor | LinearFactors, o: torch.Tensor) -> tuple[torch.Tensor]:
            if isinstance(c, LinearFactors):
                # ‖W − G‖² = ‖W‖² − 2⟨W, G⟩ + ‖G‖² without materialising W
                return (sq_norm(c) - 2 * inner(c, o) + observed.sq_norm(o),)
            # mse_loss is one fused kernel forward and backward
            return (_per_candidate_sum(F.mse_loss(c, o, reduction="none")),)

        return layer_sums(candidate, observed, term)[0]


@register_objective
class L1Distance(Objective):
    """Σ_k w_k |g_k − g_obs,k| over parameters k (Laplacian likelihood up to scale)."""

    name = "l1"

    def __call__(self, candidate: CandidateUpdates, observed: Observed) -> torch.Tensor:
        def term(c: torch.Tensor | LinearFactors, o: torch.Tensor) -> tuple[torch.Tensor]:
            return (_per_candidate_sum(F.l1_loss(_materialized(c), o, reduction="none")),)

        return layer_sums(candidate, observed, term)[0]


@register_objective
class CosineDistance(Objective):
    """1 − ⟨g, g_obs⟩ / (‖g‖ ‖g_obs‖) over all parameters at once (Inverting Gradients);
    with parameter weights, the inner product and both norms are Σ_k w_k ⟨·, ·⟩_k."""

    name = "cos"
    options = ("weighted_norms", "epsilon")
    weighted_norms = True
    epsilon = 1e-12

    def __call__(self, candidate: CandidateUpdates, observed: Observed) -> torch.Tensor:
        def terms(c: torch.Tensor | LinearFactors, o: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return inner(c, o), sq_norm(c), observed.sq_norm(o)

        norms = bool(self.weighted_norms)
        dot, c_norm, o_norm = layer_sums(candidate, observed, terms, (True, norms, norms))
        eps = self.epsilon
        return 1.0 - dot / (c_norm.add(eps).sqrt() * o_norm.add(eps).sqrt())


@register_objective
class PaperCosineDistance(CosineDistance):
    """The Bayesian framework paper's global cosine distance (its `cos_sim_global`):
    1 − Σ_k w_k ⟨g_k, g_obs,k⟩ / (√(‖g‖² + 10⁻⁷) √(‖g_obs‖² + 10⁻⁷)), one cosine over all
    parameters. Parameter weights (its per-layer weights) scale only the inner product;
    the norms are taken unweighted over the parameters the data term keeps. Without
    weights it is `cos`."""

    name = "cos-paper"
    weighted_norms = False
    epsilon = 1e-7


@register_objective
class NegativeLogLikelihood(Objective):
    """−log p(g_obs | g) from each target's mechanism; Gaussian σ = 1 (½‖·‖²) without one.

    A mechanism that states itself isotropic Gaussian noise and nothing else
    (`attacks.likelihood.gaussian_sigma`) is evaluated as ‖·‖²/(2σ²) through `L2Distance`,
    which avoids materialising large layers; every other mechanism gets materialised updates.
    With parameter weights, the mechanism's log-likelihood is taken separately over each
    set of parameters sharing a weight and summed with those weights (zero-weight
    parameters dropped): exact for the usual coordinate-wise mechanisms (noise, pruning,
    quantisation); a mechanism that couples parameters (norm clipping) then sees each set
    on its own.
    """

    name = "likelihood"

    def __call__(self, candidate: CandidateUpdates, observed: Observed) -> torch.Tensor:
        parts = []
        for g in observed.groups:
            sub = candidate.select(g.start, g.stop)
            sigma = 1.0 if g.mechanism is None else gaussian_sigma(g.mechanism)
            if sigma is not None:
                parts.append(L2Distance()(sub, observed.select(g.start, g.stop)) / (2 * sigma**2))
            elif observed.weights is None:
                parts.append(-g.mechanism.log_likelihood(g.update, sub.updates))
            else:
                parts.append(_weighted_nll(g, sub.parts, observed.weights))
        return torch.cat(parts)


def _weighted_nll(
    group: ObservedGroup, parts: list[torch.Tensor | LinearFactors], weights: list[float]
) -> torch.Tensor:
    """Σ_w w · −log p(observed_S(w) | candidate_S(w)) over the sets S(w) of parameters of weight w."""
    total = 0
    for w in sorted({w for w in weights if w != 0.0}):
        keep = [k for k, wk in enumerate(weights) if wk == w]
        ll = group.mechanism.log_likelihood(
            [group.update[k] for k in keep], [_materialized(parts[k]) for k in keep]
        )
        total = total - w * ll
    return total


def build_objective(name: str, **options: object) -> Objective:
    """The objective called `name` with keyword `options` (`Objective.options`); an
    AttackError lists the known names, or the valid options, otherwise."""
    return _REGISTRY.get(name)(**options)
