"""Before the first round: does the audit set-up run at all? And what should an update look like?

`preflight` builds the model, runs one forward and one backward pass on a batch of
the declared input shape drawn from the declared domain, and runs every attack for one
step on the update a client like the declared one makes from `PROBE_SIZE` such inputs
(`fedsim.auditor.client_sizes`: the declared protocol at a smaller batch, so that a
client of 1,864 examples does not make the check cost minutes), so that a wrong shape,
domain or attack option fails when the auditor is built, before any training, with one
line naming what is wrong. `simulated_update` is the declared protocol's update for any
start parameters (the protocol check compares observed updates with it); `probe_case`
is the probe the cost plan times (`fedsim.auditor.cost_plan`).
"""

from __future__ import annotations

import torch

from attacks.local_training import client_options
from attacks.target import Budget
from defenses.client import client_update
from defenses.identity import NoDefense
from fedsim.auditor.attack_calls import attack_targets
from fedsim.auditor.attack_runner import AttackRunner
from fedsim.auditor.client_sizes import smaller_client
from fedsim.auditor.jobs import ClientCase
from fedsim.auditor.setup import AuditSetup
from fedsim.errors import ConfigError

_PROBE_SEED = 0x5EED

PROBE_SIZE = 8
"""The most examples of the client whose update the attacks are tried (and timed) on."""


def probe_batch(setup: AuditSetup) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of `batch_size` random inputs of the domain and random labels (seeded)."""
    generator = torch.Generator().manual_seed(_PROBE_SEED)
    x = setup.domain.random_inputs((setup.batch_size, *setup.input_shape), generator)
    y = torch.randint(0, setup.num_classes, (setup.batch_size,), generator=generator)
    return x, y


def simulated_update(setup: AuditSetup, model: torch.nn.Module) -> list[torch.Tensor]:
    """The clean update the declared protocol makes from `model`'s parameters on `probe_batch`.

    FedSGD: the gradient; FedAvg: the weight delta after the local steps with the declared
    optimiser (as the client does it, `defenses.client.client_update`; unshuffled, as
    the attacks model it). `model` is left unchanged.
    """
    x, y = probe_batch(setup)
    protocol = setup.protocol
    work = _copy(model)
    result = client_update(
        NoDefense(),
        work,
        x.to(_dtype_of(work)),
        y,
        torch.Generator().manual_seed(_PROBE_SEED),
        **client_options(protocol),
    )
    return [u.detach() for u in result.update]


def probe_case(
    setup: AuditSetup, runner: AttackRunner, model: torch.nn.Module, size: int
) -> tuple[AttackRunner, ClientCase]:
    """The runner and the case of a client like the declared one holding `size` random
    inputs of the domain (its update from `model`'s parameters; truth attached)."""
    small = smaller_client(setup, min(size, setup.batch_size))
    if small is not setup:
        runner = AttackRunner(small, runner.device, runner.attacks)
    case = ClientCase(client=0, update=simulated_update(small, model))
    case.originals, case.true_labels = probe_batch(small)
    return runner, case


def preflight(setup: AuditSetup, runner: AttackRunner) -> None:
    """Raise ConfigError, in one line, where the model or an attack cannot run on this set-up."""
    model = _forward_backward(setup)
    runner, case = probe_case(setup, runner, model, PROBE_SIZE)
    for config, attack in runner.attacks:
        try:
            target = runner.target(model, case)
            (result,), _ = attack_targets(attack, [target], Budget(iterations=1, restarts=1))
        except Exception as error:  # noqa: BLE001 - reported as the set-up's error
            result = error
        if isinstance(result, Exception):
            reason = f"{type(result).__name__}: {result}".splitlines()[0]
            raise ConfigError(f"attack {config.display_name!r} cannot run here: {reason}")
        if result.status == "failed":
            raise ConfigError(
                f"attack {config.display_name!r} cannot run here: {result.message or 'it failed'}"
            )


def _forward_backward(setup: AuditSetup) -> torch.nn.Module:
    try:
        model = setup.build_model()
    except Exception as error:  # noqa: BLE001
        raise ConfigError(f"model_fn: building the model failed ({error})") from None
    x, y = probe_batch(setup)
    shape = (setup.batch_size, *setup.input_shape)
    try:
        logits = model(x.to(_dtype_of(model)))
    except Exception as error:  # noqa: BLE001
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(
            f"input_shape: the model cannot take a batch of shape {shape} ({reason})"
        ) from None
    if tuple(logits.shape) != (setup.batch_size, setup.num_classes):
        raise ConfigError(
            f"num_classes: the model maps a batch of shape {shape} to {tuple(logits.shape)}, "
            f"expected ({setup.batch_size}, {setup.num_classes})"
        )
    loss = torch.nn.functional.cross_entropy(logits, y)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    unused = [n for (n, _), g in zip(model.named_parameters(), grads, strict=True) if g is None]
    if unused:
        raise ConfigError(
            f"model_fn: parameters {', '.join(unused[:3])} get no gradient from the loss; "
            "the attacks need every parameter's update to depend on the inputs"
        )
    return model


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model)


def _dtype_of(model: torch.nn.Module) -> torch.dtype:
    p = next(model.parameters(), None)
    return p.dtype if p is not None else torch.float32
