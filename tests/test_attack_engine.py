"""The engine: batched equals one at a time, determinism, time budget, FedAvg, label inference."""

from __future__ import annotations

import copy

import pytest
import torch
from attack_helpers import fedavg_target, gradient_target, mnist_images, paper_cnn, psnr
from torch import nn

from attacks import Budget, ThreatModel, build_attack, engine
from attacks.engine import OptimizerConfig, data_weight, learning_rate
from attacks.updates import ActivationUpdates, VmapUpdates, avg_pool, build_updates
from defenses.mechanisms import GaussianMechanism


@pytest.fixture(scope="module")
def images(data_root):
    x, y, info = mnist_images(data_root, 3)
    return x, y, paper_cnn(info)


def test_batched_equals_one_at_a_time(images):
    # float64, so that Adam's scale invariance cannot blow float32 reordering noise in
    # near-zero gradient entries up to visible differences
    x, y, model = images
    model = copy.deepcopy(model).double()
    x = x.double()
    targets = [gradient_target(model, x[i : i + 1], y[i : i + 1]) for i in range(3)]
    attack = build_attack("bayes", iterations=15)
    budget = Budget(iterations=15, restarts=2)
    together = attack.reconstruct_many(targets, budget)
    alone = [attack.reconstruct(t, budget) for t in targets]
    for a, b in zip(together, alone, strict=True):
        torch.testing.assert_close(a.inputs, b.inputs, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(a.objective, b.objective, atol=1e-6, rtol=1e-6)
        assert a.best == b.best


@pytest.mark.parametrize("route", ["fast", "vmap"])
def test_batched_equals_one_at_a_time_with_train_mode_batch_norm(route):
    """Both routes on a batch-norm network in train mode: candidates batched or alone agree."""
    model = _bn_model(1)
    x = torch.rand(3, 1, 1, 14, 14, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([[1], [4], [7]])
    targets = [gradient_target(model.train(), x[i], y[i]) for i in range(3)]
    attack = build_attack("cos", iterations=10, route=route, priors={"tv": 0.1})
    together = attack.reconstruct_many(targets)
    alone = [attack.reconstruct(t) for t in targets]
    for a, b in zip(together, alone, strict=True):
        torch.testing.assert_close(a.inputs, b.inputs, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(a.objective, b.objective, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("attack", ["bayes", "cos"])
def test_chunked_candidates_give_the_results_of_one_pass(images, monkeypatch, attack):
    """Chunks of candidates within each step (large models) change nothing but memory traffic:
    chunks of three cut through the candidate groups of three targets × two restarts."""
    x, y, model = images
    model = copy.deepcopy(model).double()
    x = x.double()
    targets = [
        gradient_target(model, x[i : i + 1], y[i : i + 1], mechanism=GaussianMechanism(sigma=0.1))
        for i in range(3)
    ]
    run = build_attack(attack, iterations=8)
    budget = Budget(iterations=8, restarts=2)
    whole = run.reconstruct_many(targets, budget)
    size = sum(p.numel() for p in model.parameters())
    monkeypatch.setattr(engine, "CHUNK_UPDATE_ELEMENTS", 3 * size)
    assert len(engine.chunks(run._problem(targets, list(y[:3, None]), budget, x.device)[0], 6)) == 2
    chunked = run.reconstruct_many(targets, budget)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a.inputs, b.inputs, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(a.objective, b.objective, atol=1e-6, rtol=1e-6)


def test_same_seed_same_result_and_other_seed_differs(images):
    x, y, model = images
    target = gradient_target(model, x[:1], y[:1])
    first = build_attack("l2", seed=3).reconstruct(target, Budget(iterations=10))
    again = build_attack("l2", seed=3).reconstruct(target, Budget(iterations=10))
    other = build_attack("l2", seed=4).reconstruct(target, Budget(iterations=10))
    assert torch.equal(first.inputs, again.inputs)
    assert not torch.equal(first.inputs, other.inputs)


def test_best_restart_is_the_lowest_objective(images):
    x, y, model = images
    rec = build_attack("l2").reconstruct(
        gradient_target(model, x[:1], y[:1]), Budget(iterations=5, restarts=3)
    )
    assert rec.objective.shape == (3,)
    assert rec.best == int(rec.objective.argmin())


def test_time_budget_returns_timeout_with_result(images):
    x, y, model = images
    rec = build_attack("bayes").reconstruct(
        gradient_target(model, x[:1], y[:1]), Budget(iterations=10_000, seconds=0.3)
    )
    assert rec.status == "timeout"
    assert 0 <= rec.iterations < 10_000
    assert rec.inputs.shape == x[:1].shape
    assert torch.isfinite(rec.objective).all()


def test_batch_of_two_images(images):
    x, y, model = images
    rec = build_attack("l2", lr=0.1, decay=0.98, priors={}).reconstruct(
        gradient_target(model, x[:2], y[:2]), Budget(iterations=40)
    )
    assert rec.inputs.shape == (2, 1, 28, 28)
    # a batch gradient is order-invariant: score the better of the two matchings
    direct = psnr(rec.inputs, x[:2])
    swapped = psnr(rec.inputs.flip(0), x[:2])
    assert max(direct, swapped) > 12.0


@pytest.mark.parametrize("known", [True, False], ids=["unrolled", "scaled-gradient"])
def test_fedavg_delta_is_attacked(images, known):
    x, y, model = images
    target = fedavg_target(model, x[:1], y[:1], steps=3, lr=0.05, known=known)
    attack = build_attack("bayes")
    start = attack._initial(target, 0)
    rec = attack.reconstruct(target, Budget(iterations=40))
    assert psnr(rec.inputs, x[:1]) - psnr(start[0], x[:1]) > 3.0


def test_labels_are_inferred_when_not_granted(images):
    x, y, model = images
    target = gradient_target(model, x[:1], y[:1], ThreatModel(labels_known=False))
    rec = build_attack("l2").reconstruct(target, Budget(iterations=2))
    assert rec.labels_inferred
    assert torch.equal(rec.labels, y[:1])


def test_schedules():
    ramp = OptimizerConfig(weight_start=1e-3, weight_ramp=0.5)
    assert data_weight(ramp, 0, 200) == pytest.approx(1e-3)
    assert data_weight(ramp, 50, 200) == pytest.approx(1e-3**0.5)
    assert data_weight(ramp, 100, 200) == 1.0
    # the paper's heuristic attacks ramp between two tuned ends, down as well as up
    down = OptimizerConfig(weight_start=8.0, weight_end=2.0, weight_ramp=0.5)
    assert [data_weight(down, s, 200) for s in (0, 50, 100, 199)] == pytest.approx(
        [8.0, 4.0, 2.0, 2.0]
    )
    flat = OptimizerConfig(weight_start=3.0, weight_end=3.0, weight_ramp=0.5)
    assert data_weight(flat, 0, 200) == 3.0
    step = OptimizerConfig(lr=0.1, schedule="step", decay=0.1)
    assert [learning_rate(step, s, 80) for s in (0, 29, 30, 50, 70)] == pytest.approx(
        [0.1, 0.1, 0.01, 1e-3, 1e-4]
    )
    exp = OptimizerConfig(lr=0.5, schedule="exponential", decay=0.94)
    assert learning_rate(exp, 2, 200) == pytest.approx(0.5 * 0.94**2)


def _bn_model(batch: int) -> nn.Module:
    """Conv and linear layers with batch norm (1-d only for batches > 1: train mode needs them)."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 3 * 3, 8),
        nn.BatchNorm1d(8) if batch > 1 else nn.Identity(),
        nn.ReLU(),
        nn.Linear(8, 10),
    ).double()


@pytest.mark.parametrize("train", [True, False], ids=["bn-train", "bn-eval"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("pool_from", [None, 0], ids=["pool-kernel", "pool-as-convolution"])
def test_fast_route_matches_vmap_and_plain_autograd(train, batch, pool_from, monkeypatch):
    if pool_from is not None:  # small inputs keep the pooling kernel unless forced
        monkeypatch.setattr(avg_pool, "POOL_AS_CONVOLUTION_FROM", pool_from)
    model = _bn_model(batch)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(4, batch, 1, 14, 14, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 10, (4, batch))
    fast = ActivationUpdates(model, batch, train)(x, y)
    generic = VmapUpdates(model, batch, train)(x, y)
    for u, v in zip(fast.updates, generic.updates, strict=True):
        torch.testing.assert_close(u, v)
    for (m1, v1), (m2, v2) in zip(fast.bn_stats, generic.bn_stats, strict=True):
        torch.testing.assert_close(m1, m2)
        torch.testing.assert_close(v1, v2)
    plain = model.train(train)
    loss = nn.functional.cross_entropy(plain(x[2].detach()), y[2])
    for u, g in zip(fast.updates, torch.autograd.grad(loss, list(plain.parameters())), strict=True):
        torch.testing.assert_close(u[2], g)
    # second order: the gradient of a matching loss w.r.t. x agrees too
    ga = torch.autograd.grad(sum((u**2).sum() for u in fast.updates), x)[0]
    gb = torch.autograd.grad(sum((u**2).sum() for u in generic.updates), x)[0]
    torch.testing.assert_close(ga, gb)


def test_auto_route_picks_fast_for_paper_cnn_and_vmap_otherwise(images):
    _, _, model = images
    assert isinstance(
        build_updates(model, 1, True, input_shape=(1, 28, 28), num_classes=10), ActivationUpdates
    )

    class Scaled(nn.Module):  # a parameter outside any supported layer
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 10)
            self.gain = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return self.lin(x.flatten(1)) * self.gain

    assert isinstance(
        build_updates(Scaled(), 1, True, input_shape=(1, 2, 2), num_classes=10), VmapUpdates
    )
