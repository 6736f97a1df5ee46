"""Hyper-parameter search for an attack on a few tuning targets (grid or random).

The Bayesian framework paper tuned each attack's weights on a few images before the real
run. Here a candidate setting is scored either by the attack's own final objective
(no ground truth needed, as a real adversary would) or, given held-out tuning targets
with known inputs, by a caller-supplied score such as PSNR. Never pass the targets being
scored: the helper cannot tell, so that discipline is the caller's.
"""

from __future__ import annotations

import itertools
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


@dataclass
class Trial:
    params: dict[str, object]
    value: float  # mean final objective (lower is better) or the score (higher is better)


@dataclass
class SearchResult:
    best: dict[str, object]
    trials: list[Trial] = field(default_factory=list)
    by: str = "objective"


def _settings(space: Mapping[str, Sequence[object]], samples: int | None, seed: int) -> list[dict]:
    names = list(space)
    grid = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(space[n] for n in names))
    ]
    if samples is None or samples >= len(grid):
        return grid
    return random.Random(seed).sample(grid, samples)


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
    base = build_attack(attack) if isinstance(attack, str) else attack
    if not isinstance(base, GradientAttack):
        raise AttackError(f"attack must be a name in {sorted(ATTACKS)} or a GradientAttack")
    check_overrides(type(base), dict(space))
    if not targets:
        raise AttackError("tuning needs at least one target")
    if (truth is None) != (score is None):
        raise AttackError("give both truth and score to tune by ground truth, or neither")
    if truth is not None and len(truth) != len(targets):
        raise AttackError(f"truth: {len(truth)} inputs for {len(targets)} targets")

    trials = []
    for params in _settings(space, samples, seed):
        recs = base.with_overrides(**params).reconstruct_many(targets, budget)
        if score is None:
            value = float(torch.stack([r.objective[r.best] for r in recs]).mean())
        else:
            value = float(score(recs, truth))
        trials.append(Trial(params, value))
    pick = min if score is None else max
    best = pick(trials, key=lambda t: t.value)
    return SearchResult(best.params, trials, "objective" if score is None else "score")
