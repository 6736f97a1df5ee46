"""Hyper-parameter search for an attack on a few tuning targets: a grid, and the paper's sweep.

The Bayesian framework paper tuned each attack on a few images before the real run. Here a
candidate setting is scored either by the attack's own final objective (no ground truth
needed, as a real adversary would) or, given held-out tuning targets with known inputs, by
a caller-supplied score such as PSNR. Never pass the targets being scored: the helper
cannot tell, so that discipline is the caller's.

`search` tries a grid (every combination, or `samples` of them). `tune` first runs the
paper's weight sweep (`Sweep`): one weight, set on several hyper-parameters at once,
halved from `high` down to `low`, the best (ties averaged) then refined on a linear grid
from half to twice it; the grid that follows reads its values for the swept names as
factors of the weight found. The paper calls the halving its binary search; with
`ratio` 2 and `refine` 20 it is the paper's (its `tune_attacks_dp.py` and
`tune_attacks_theory.py`).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from attacks.base import GradientAttack, check_overrides
from attacks.errors import AttackError
from attacks.registry import ATTACKS, build_attack
from attacks.target import AttackTarget, Budget, Reconstruction

Score = Callable[[Sequence[Reconstruction], Sequence[torch.Tensor]], float]
"""(reconstructions, true inputs of the tuning targets) → score, higher is better."""

TIE = 1e-3
"""Sweep scores closer than this to the best are ties, whose weights are averaged (the paper's)."""


@dataclass
class Trial:
    params: dict[str, object]
    value: float  # mean final objective (lower is better) or the score (higher is better)
    phase: str = "grid"  # "sweep", "refine" or "grid"


@dataclass
class SearchResult:
    best: dict[str, object]
    trials: list[Trial] = field(default_factory=list)
    by: str = "objective"


@dataclass(frozen=True)
class Sweep:
    """One weight searched before the grid, set on every name in `names` at once.

    Values `high`, `high/ratio`, … down to the last one above `low`; the best score
    (scores within `TIE` of it averaged) is then refined over `refine` points
    best·(0.5 + 1.5·i/refine), i = 0 … refine − 1, and the best of all is kept.
    """

    names: tuple[str, ...]
    high: float
    low: float
    ratio: float = 2.0
    refine: int = 20

    def __post_init__(self) -> None:
        if not self.names:
            raise AttackError("sweep: names must name at least one hyper-parameter")
        if not (0 < self.low <= self.high and math.isfinite(self.high)):
            raise AttackError(f"sweep: need 0 < low ≤ high, got low={self.low}, high={self.high}")
        if not self.ratio > 1:
            raise AttackError(f"sweep: ratio must be above 1, got {self.ratio}")
        if self.refine < 0:
            raise AttackError(f"sweep: refine must be ≥ 0, got {self.refine}")

    def values(self) -> list[float]:
        """The halving values, `high` first (at least `high` itself)."""
        out, value = [self.high], self.high / self.ratio
        while value > self.low:
            out.append(value)
            value /= self.ratio
        return out

    def refined(self, best: float) -> list[float]:
        return [best * (0.5 + 1.5 * i / self.refine) for i in range(self.refine)]


@dataclass
class SweepResult:
    best: float
    trials: list[tuple[str, float, float]]  # (phase, weight, score)


def weight_sweep(evaluate: Callable[[float], float], sweep: Sweep) -> SweepResult:
    """Sweep the weight (`evaluate`: weight → score, higher is better); the best weight."""
    trials: list[tuple[str, float, float]] = []
    best_score, tied = -math.inf, []
    for weight in sweep.values():
        score = evaluate(weight)
        trials.append(("sweep", weight, score))
        if abs(score - best_score) < TIE:
            tied.append(weight)
        elif score > best_score:
            best_score, tied = score, [weight]
    centre = sum(tied) / len(tied)
    best, best_score = max(((w, s) for phase, w, s in trials if w in tied), key=lambda ws: ws[1])
    for weight in sweep.refined(centre):
        score = evaluate(weight)
        trials.append(("refine", weight, score))
        if score > best_score:
            best, best_score = weight, score
    return SweepResult(best, trials)


def _settings(space: Mapping[str, Sequence[object]], samples: int | None, seed: int) -> list[dict]:
    names = list(space)
    grid = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(space[n] for n in names))
    ]
    if samples is None or samples >= len(grid):
        return grid
    return random.Random(seed).sample(grid, samples)


def _base_attack(attack: str | GradientAttack) -> GradientAttack:
    base = build_attack(attack) if isinstance(attack, str) else attack
    if not isinstance(base, GradientAttack):
        raise AttackError(f"attack must be a name in {sorted(ATTACKS)} or a GradientAttack")
    return base


def _check_targets(
    targets: Sequence[AttackTarget],
    truth: Sequence[torch.Tensor] | None,
    score: Score | None,
) -> None:
    if not targets:
        raise AttackError("tuning needs at least one target")
    if (truth is None) != (score is None):
        raise AttackError("give both truth and score to tune by ground truth, or neither")
    if truth is not None and len(truth) != len(targets):
        raise AttackError(f"truth: {len(truth)} inputs for {len(targets)} targets")


def _evaluate(
    base: GradientAttack,
    params: Mapping[str, object],
    targets: Sequence[AttackTarget],
    truth: Sequence[torch.Tensor] | None,
    score: Score | None,
    budget: Budget | None,
) -> float:
    """Mean final objective of the setting (no score), else its score."""
    recs = base.with_overrides(**params).reconstruct_many(targets, budget)
    if score is None:
        return float(torch.stack([r.objective[r.best] for r in recs]).mean())
    return float(score(recs, truth))


def search(
    attack: str | GradientAttack,
    space: Mapping[str, Sequence[object]],
    targets: Sequence[AttackTarget],
    *,
    truth: Sequence[torch.Tensor] | None = None,
    score: Score | None = None,
    budget: Budget | None = None,
    samples: int | None = None,
    seed: int = 0,
) -> SearchResult:
    """Try every setting of `space` (or `samples` random ones) on `targets`; return the best.

    `space` maps hyper-parameter names to candidate values, e.g.
    `{"priors": [{"tv": 10.0}, {"tv": 100.0}], "lr": [0.1, 0.2]}`. Without `score`, settings
    are ranked by the mean final attack objective (lower is better) — comparable only when
    the searched names leave the objective's definition unchanged (lr, schedule, restarts);
    to compare prior weights, give held-out `truth` inputs and a `score`.
    """
    base = _base_attack(attack)
    check_overrides(type(base), dict(space))
    _check_targets(targets, truth, score)
    trials = [
        Trial(params, _evaluate(base, params, targets, truth, score, budget))
        for params in _settings(space, samples, seed)
    ]
    pick = min if score is None else max
    best = pick(trials, key=lambda t: t.value)
    return SearchResult(best.params, trials, "objective" if score is None else "score")


def tune(
    attack: str | GradientAttack,
    space: Mapping[str, Sequence[object]],
    targets: Sequence[AttackTarget],
    *,
    truth: Sequence[torch.Tensor],
    score: Score,
    sweep: Sweep | None = None,
    budget: Budget | None = None,
    samples: int | None = None,
    seed: int = 0,
) -> SearchResult:
    """The paper's tuning: `sweep` (if any) finds a weight, then `space` is searched around it.

    The swept weight is set on every name of `sweep.names`, the other names of `space` at
    their first value; in the grid that follows, the values of the swept names multiply
    the weight found (a name missing from `space` keeps the weight itself). The best
    trial of all is kept. Scored by `score` on held-out `truth`: the sweep trades the data
    term against the priors, which the attack's own objective cannot rank.
    """
    base = _base_attack(attack)
    first: list[Trial] = []
    centre: dict[str, object] = {}
    grid_space = dict(space)
    if sweep is not None:
        check_overrides(type(base), {**space, **dict.fromkeys(sweep.names)})
        _check_targets(targets, truth, score)
        # The sweep runs at the first value of every other name of the space (the paper's).
        firsts = {name: values[0] for name, values in space.items() if name not in sweep.names}

        def at(weight: float) -> dict[str, object]:
            return {**firsts, **dict.fromkeys(sweep.names, weight)}

        swept = weight_sweep(lambda w: _evaluate(base, at(w), targets, truth, score, budget), sweep)
        first = [Trial(at(w), s, phase) for phase, w, s in swept.trials]
        centre = at(swept.best)
        grid_space = {
            name: [float(v) * swept.best for v in values] if name in sweep.names else values
            for name, values in space.items()
        }
    grid: list[Trial] = []
    if grid_space or sweep is None:
        grid = search(
            base.with_overrides(**centre),
            grid_space,
            targets,
            truth=truth,
            score=score,
            budget=budget,
            samples=samples,
            seed=seed,
        ).trials
    best = max([*first, *grid], key=lambda t: t.value)
    params = best.params if best.phase != "grid" else {**centre, **best.params}
    return SearchResult(params, first + grid, "score")
