"""The paper's tuning: its weight sweep (halving, then a linear refinement) and the grid after it."""

from __future__ import annotations

import math

import pytest
import torch
from attack_helpers import gradient_target, mnist_images, paper_cnn

from attacks import Budget
from attacks.errors import AttackError
from attacks.tuning import Sweep, tune, weight_sweep

pytestmark = pytest.mark.usefixtures("single_thread")


def test_sweep_values_halve_from_high_to_low_and_refine_around_the_best():
    sweep = Sweep(("weight_start", "weight_end"), high=8.0, low=0.4)
    assert sweep.values() == [8.0, 4.0, 2.0, 1.0, 0.5]
    assert len(Sweep(("w",), high=1e7, low=5e-6).values()) == 41  # the paper's heuristics' 41
    assert Sweep(("w",), 1.0, 1.0, refine=4).refined(2.0) == [1.0, 1.75, 2.5, 3.25]


@pytest.mark.parametrize("peak", [3.7e-4, 0.3, 123.0, 2.5e5])
def test_sweep_converges_on_a_synthetic_objective(peak):
    seen = []

    def score(weight: float) -> float:  # unimodal in log(weight), highest at `peak`
        seen.append(weight)
        return -abs(math.log(weight / peak))

    found = weight_sweep(score, Sweep(("w",), high=1e7, low=5e-6))
    assert abs(math.log(found.best / peak)) < math.log(1.05)  # within 5 %
    assert len(found.trials) == len(seen) == 41 + 20
    assert [p for p, _, _ in found.trials].count("refine") == 20


def test_sweep_averages_ties_as_the_paper_does():
    # 4, 2 and 1 score the same: the refinement centres on their mean, 7/3
    found = weight_sweep(lambda w: 1.0 if w <= 4 else 0.0, Sweep(("w",), 8.0, 0.9, refine=2))
    assert [w for p, w, _ in found.trials if p == "refine"] == pytest.approx([7 / 6, 35 / 12])
    assert found.best == 4.0  # no refined weight beats the first of the tied ones


def test_bad_sweeps_are_refused():
    with pytest.raises(AttackError, match="low"):
        Sweep(("w",), high=1.0, low=2.0)
    with pytest.raises(AttackError, match="ratio"):
        Sweep(("w",), high=1.0, low=0.1, ratio=1.0)
    with pytest.raises(AttackError, match="names"):
        Sweep((), high=1.0, low=0.1)


def _psnr(recs, truth) -> float:
    mse = [
        float((r.inputs.clamp(0, 1) - t).square().mean()) for r, t in zip(recs, truth, strict=True)
    ]
    return sum(-10 * math.log10(max(m, 1e-10)) for m in mse) / len(mse)


def test_tune_sweeps_then_searches_around_the_weight_and_keeps_the_best(data_root):
    x, y, info = mnist_images(data_root, 2, split="train")
    model = paper_cnn(info)
    targets = [gradient_target(model, x[i : i + 1], y[i : i + 1]) for i in range(2)]
    truth = [x[i : i + 1] for i in range(2)]
    sweep = Sweep(("weight_start", "weight_end"), high=100.0, low=0.5, ratio=10.0, refine=2)
    space = {"weight_end": [1.0, 2.0], "weight_ramp": [0.5], "lr": [0.1, 0.2]}
    found = tune(
        "l2", space, targets, truth=truth, score=_psnr, sweep=sweep, budget=Budget(iterations=4)
    )
    phases = [t.phase for t in found.trials]
    assert phases == ["sweep"] * 3 + ["refine"] * 2 + ["grid"] * 4
    swept = [t for t in found.trials if t.phase != "grid"]
    # the sweep holds the other names at their first value and sets both weights at once
    assert all(t.params["lr"] == 0.1 and t.params["weight_ramp"] == 0.5 for t in swept)
    assert all(t.params["weight_start"] == t.params["weight_end"] for t in swept)
    weight = max(swept, key=lambda t: t.value).params["weight_start"]
    grid = [t for t in found.trials if t.phase == "grid"]
    assert sorted(t.params["weight_end"] for t in grid) == pytest.approx(
        [weight, weight, 2 * weight, 2 * weight]
    )  # factors of the swept weight
    best = max(found.trials, key=lambda t: t.value)
    assert found.best["weight_start"] == pytest.approx(weight)
    assert {k: found.best[k] for k in best.params} == best.params
    assert found.by == "score"
    with pytest.raises(AttackError, match="unknown hyper-parameter"):
        tune("l2", {}, targets, truth=truth, score=_psnr, sweep=Sweep(("weigth",), 1.0, 0.5))


def test_tune_without_a_sweep_is_the_grid_search(data_root):
    x, y, info = mnist_images(data_root, 1, split="train")
    target = gradient_target(paper_cnn(info), x, y)
    found = tune(
        "l2", {"lr": [1e-4, 0.1]}, [target], truth=[x], score=_psnr, budget=Budget(iterations=5)
    )
    assert found.best == {"lr": 0.1} and [t.phase for t in found.trials] == ["grid"] * 2
    assert torch.isfinite(torch.tensor([t.value for t in found.trials])).all()
