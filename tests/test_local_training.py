"""The FedAvg attack's model of local training equals a client's real torch.optim training.

Each test trains a small model the way a Flower client does (a torch optimiser, a
DataLoader's mini-batches, `scheduler.step()` after `optimizer.step()`), then asks the
attack's update function (`attacks.updates.build_updates`, unrolled) for the update of
the same batch: they must agree to float tolerance, over several local steps and several
mini-batches per pass.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from attacks.errors import AttackError
from attacks.local_optimizer import LocalOptimizer, from_torch
from attacks.local_training import (
    approximations,
    gradient_weights,
    local_batches,
    resolve_lr_schedule,
)
from attacks.target import AttackTarget, Protocol, ThreatModel
from attacks.updates import build_updates
from defenses.client import client_update
from defenses.client import local_batches as client_batches
from defenses.identity import NoDefense

BATCH, CHUNK, STEPS = 10, 4, 7  # 3 mini-batches a pass (4, 4, 2), over two passes and more

OPTIMIZERS = {
    "sgd": functools.partial(torch.optim.SGD, lr=0.1),
    "momentum": functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9),
    "nesterov": functools.partial(
        torch.optim.SGD, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3
    ),
    "dampening": functools.partial(
        torch.optim.SGD, lr=0.1, momentum=0.5, dampening=0.3, weight_decay=0.01
    ),
    "adam": functools.partial(torch.optim.Adam, lr=1e-2),
    "adam-decay-amsgrad": functools.partial(
        torch.optim.Adam, lr=1e-2, betas=(0.8, 0.99), weight_decay=0.01, amsgrad=True
    ),
    "adamw": functools.partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.05),
}


def _model(batch_norm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(1, 3, 3, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(3))
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 5)]
    return nn.Sequential(*layers).double()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(BATCH, 1, 6, 6, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, 5, (BATCH,), generator=gen)


def _flower_client(model, x, y, factory, scheduler=None, drop_last=False) -> list[torch.Tensor]:
    """A Flower client's local training: DataLoader, zero_grad, backward, step, schedule."""
    model = _copy(model)
    model.train()
    start = [p.detach().clone() for p in model.parameters()]
    optimizer = factory(model.parameters())
    schedule = scheduler(optimizer) if scheduler is not None else None
    loader = DataLoader(TensorDataset(x, y), batch_size=CHUNK, drop_last=drop_last)
    steps = 0
    while steps < STEPS:
        for xb, yb in loader:
            if steps == STEPS:
                break
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            steps += 1
    return [p.detach() - s for p, s in zip(model.parameters(), start, strict=True)]


def _copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


def _modelled(model, x, y, protocol: Protocol) -> list[torch.Tensor]:
    updates = build_updates(model, BATCH, True, protocol=protocol, unroll=True)
    return [u[0] for u in updates(x[None], y[None]).updates]


def _protocol(factory, last_batch="short", **extra) -> Protocol:
    optimizer, lr = from_torch(factory)
    return Protocol("fedavg", STEPS, lr, CHUNK, optimizer=optimizer, last_batch=last_batch, **extra)


def _assert_close(modelled, real, rtol=1e-9) -> None:
    scale = max(r.abs().max().item() for r in real)
    assert scale > 0
    worst = max((m - r).abs().max().item() for m, r in zip(modelled, real, strict=True))
    assert worst <= rtol * scale, f"max difference {worst:.3g} against scale {scale:.3g}"


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_unrolled_optimiser_equals_torch_optim(name):
    model, (x, y) = _model(), _batch()
    real = _flower_client(model, x, y, OPTIMIZERS[name])
    _assert_close(_modelled(model, x, y, _protocol(OPTIMIZERS[name])), real)


@pytest.mark.parametrize("name", ["momentum", "adamw"])
def test_unrolled_optimiser_with_batch_norm_and_drop_last(name):
    model, (x, y) = _model(batch_norm=True), _batch()
    real = _flower_client(model, x, y, OPTIMIZERS[name], drop_last=True)
    modelled = _modelled(model, x, y, _protocol(OPTIMIZERS[name], last_batch="drop"))
    # The convolution bias before a train-mode batch norm has gradient 0 up to rounding,
    # which Adam's normalisation magnifies (to about 1e-9 here).
    _assert_close(modelled, real, rtol=1e-7)


def test_float32_agrees_to_float_tolerance():
    model, (x, y) = _model().float(), _batch()
    x = x.float()
    real = _flower_client(model, x, y, OPTIMIZERS["adam"])
    modelled = _modelled(model, x, y, _protocol(OPTIMIZERS["adam"]))
    _assert_close(modelled, real, rtol=1e-4)


def test_a_scheduler_stepped_every_local_step_is_followed():
    model, (x, y) = _model(), _batch()
    factory = OPTIMIZERS["momentum"]
    scheduler = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5)
    real = _flower_client(model, x, y, factory, scheduler)
    optimizer, lr = from_torch(factory)
    lrs = resolve_lr_schedule(scheduler, optimizer, lr, STEPS)
    assert lrs == (0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125)
    _assert_close(_modelled(model, x, y, _protocol(factory, lr_schedule=lrs)), real)


def test_fedsims_client_trains_as_the_model_says():
    """`client_update` (fedsim's simulated clients) steps the real torch optimiser."""
    model, (x, y) = _model(), _batch()
    protocol = _protocol(OPTIMIZERS["nesterov"], last_batch="wrap", lr_schedule=(0.1,) * STEPS)
    made = client_update(
        NoDefense(),
        _copy(model),
        x,
        y,
        torch.Generator().manual_seed(0),
        kind="fedavg",
        local_steps=STEPS,
        local_lr=0.05,
        local_batch_size=CHUNK,
        optimizer=protocol.optimizer.torch_factory(protocol.local_lr),
        lr_schedule=protocol.lr_schedule,
    )
    _assert_close(_modelled(model, x, y, protocol), made.update)


def test_assuming_plain_sgd_is_a_wrong_model_of_momentum():
    """The check above can fail: plain SGD is far from a momentum client's update."""
    model, (x, y) = _model(), _batch()
    real = _flower_client(model, x, y, OPTIMIZERS["momentum"])
    plain = _modelled(model, x, y, Protocol("fedavg", STEPS, 0.1, CHUNK, last_batch="short"))
    gap = max((m - r).abs().max().item() for m, r in zip(plain, real, strict=True))
    assert gap > 0.1 * max(r.abs().max().item() for r in real)


def test_mini_batches_are_a_data_loaders():
    for drop_last, mode in ((False, "short"), (True, "drop")):
        loader = DataLoader(list(range(BATCH)), batch_size=CHUNK, drop_last=drop_last)
        passes = [b.tolist() for b in loader] * 4
        assert local_batches(STEPS, BATCH, CHUNK, mode) == passes[:STEPS]
        assert client_batches(STEPS, BATCH, CHUNK, mode) == passes[:STEPS]
    wrapped = [[(4 * t + i) % BATCH for i in range(4)] for t in range(STEPS)]
    assert local_batches(STEPS, BATCH, CHUNK, "wrap") == wrapped
    assert client_batches(STEPS, BATCH, CHUNK, "wrap") == wrapped


def test_shuffled_passes_are_permutations_the_model_records_as_unknown():
    gen = torch.Generator().manual_seed(3)
    batches = client_batches(6, BATCH, CHUNK, "short", shuffle=gen)
    first, second = sum(batches[:3], []), sum(batches[3:], [])
    assert sorted(first) == sorted(second) == list(range(BATCH))
    assert first != list(range(BATCH))
    model = _model()
    x, y = _batch()
    target = AttackTarget(
        model=model,
        update=[torch.zeros_like(p) for p in model.parameters()],
        batch_size=BATCH,
        input_shape=(1, 6, 6),
        num_classes=5,
        labels=y,
        protocol=_protocol(OPTIMIZERS["sgd"], shuffled=True),
        threat=ThreatModel(labels_known=True),
    )
    assert approximations(target) == [
        "batch order unknown (shuffled): modelled as consecutive mini-batches"
    ]


def test_gradient_weights_of_momentum():
    """update = −Σ cₜ gₜ: plain SGD weighs each step by lr; momentum μ by lr·(1 − μ^(T−t))/(1 − μ)."""
    plain = Protocol("fedavg", 4, 0.1)
    assert torch.allclose(gradient_weights(plain), torch.full((4,), 0.1, dtype=torch.float64))
    heavy = Protocol("fedavg", 4, 0.1, optimizer=LocalOptimizer("sgd", momentum=0.5))
    expected = torch.tensor([0.1 * (1 - 0.5 ** (4 - t)) / 0.5 for t in range(4)])
    assert torch.allclose(gradient_weights(heavy), expected.double())
    assert gradient_weights(Protocol("fedavg", 4, 0.1, optimizer=LocalOptimizer("adam"))) is None


def test_optimisers_the_attack_cannot_unroll_are_refused_in_one_line():
    with pytest.raises(AttackError, match="optimizer: RMSprop is not modelled"):
        from_torch(functools.partial(torch.optim.RMSprop, lr=0.1))
    with pytest.raises(AttackError, match="optimizer: maximize"):
        from_torch(functools.partial(torch.optim.SGD, lr=0.1, maximize=True))
    with pytest.raises(AttackError, match="lr_schedule: ReduceLROnPlateau is not modelled"):
        resolve_lr_schedule(
            torch.optim.lr_scheduler.ReduceLROnPlateau, LocalOptimizer(), 0.1, STEPS
        )
    with pytest.raises(AttackError, match="lr_schedule: OneCycleLR also changes momentum"):
        resolve_lr_schedule(
            functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, total_steps=9),
            LocalOptimizer("sgd", momentum=0.9),
            0.1,
            STEPS,
        )
    with pytest.raises(AttackError, match="lr_schedule: 2 learning rates for 7 local steps"):
        resolve_lr_schedule([0.1, 0.2], LocalOptimizer(), 0.1, STEPS)
    with pytest.raises(AttackError, match="optimizer: nesterov"):
        LocalOptimizer("sgd", nesterov=True)
