"""Calling an attack so that no failure of it fails the round.

Every attack failure becomes a record with a status and the error's message: `oom` when
it ran out of memory (torch.OutOfMemoryError, a RuntimeError "out of memory",
MemoryError; a batched attack is then retried one target at a time), `failed` for any
other exception (`refused` when the attack refuses a target it cannot honestly model,
`attacks.errors.AttackRefused`), `timeout` when the attack says so or returns well past
its time budget (`Budget.seconds`). The optimisation attacks stop themselves there:
their loop checks the deadline every step, building the problem included, and returns
the best candidate so far; the over-budget check catches attacks that cannot be stopped
half-way. `out_of_reach` records an attack a cost plan keeps off the update
(`RoundJob.skipped`, `fedsim.auditor.cost_plan`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from attacks.errors import AttackRefused
from attacks.target import AttackTarget, Budget, Reconstruction

OVER_BUDGET_FACTOR = 1.5
"""An attack that returns after more than this times its `seconds` budget (plus one
second of slack) is recorded as `timeout`, its scores kept."""


def is_out_of_memory(error: BaseException) -> bool:
    """torch's OutOfMemoryError, Python's MemoryError, or a RuntimeError saying so."""
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


class OutOfReach(Exception):
    """Not an error: the cost plan keeps this attack off this update (its reason)."""


def failure_status(error: BaseException) -> str:
    """`oom`, `refused` (the attack cannot honestly run on the target), `out_of_reach`
    (the cost plan keeps it off the update) or `failed`."""
    if is_out_of_memory(error):
        return "oom"
    if isinstance(error, OutOfReach):
        return "out_of_reach"
    return "refused" if isinstance(error, AttackRefused) else "failed"


def _release_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def seeded(attack: Any, seed: int) -> Any:
    """A copy of `attack` with its `seed` option set, where it has one (else the attack itself).

    Attacks draw their randomness from generators seeded by this option, so a round's
    reconstructions are repeatable; an attack without a `seed` is repeatable only if
    it is deterministic.
    """
    if not hasattr(attack, "seed"):
        return attack
    if dataclasses.is_dataclass(attack):
        return dataclasses.replace(attack, seed=seed)
    twin = copy.copy(attack)
    twin.seed = seed
    return twin


def attack_targets(
    attack: Any, targets: Sequence[AttackTarget], budget: Budget
) -> tuple[list[Reconstruction | Exception], int]:
    """Reconstruct every target: in one batched call where the attack offers one.

    Returns the results and how many targets shared one call (1: each had its own)."""
    batched = getattr(attack, "reconstruct_many", None)
    if batched is not None and len(targets) > 1:
        try:
            return list(batched(list(targets), budget)), len(targets)
        except Exception as error:  # noqa: BLE001 - an attack failure must not fail the round
            if not is_out_of_memory(error):
                return [error] * len(targets), len(targets)
            _release_memory()  # the batch did not fit: one target at a time may
    results: list[Reconstruction | Exception] = []
    for target in targets:
        try:
            results.append(attack.reconstruct(target, budget))
        except Exception as error:  # noqa: BLE001
            if is_out_of_memory(error):
                _release_memory()
            results.append(error)
    return results, 1


def has_surrogates(attack: Any) -> bool:
    """Whether the attack may run a surrogate of itself on some targets (`surrogate_for`)."""
    return callable(getattr(attack, "surrogate_for", None))


def flag_over_budget(record: dict[str, Any], budget: Budget, elapsed: float) -> None:
    """Mark an `ok` record `timeout` when the attack ran well past its time budget."""
    limit = budget.seconds
    spent = max(float(record.get("seconds") or 0.0), elapsed)
    if limit is None or record.get("status") != "ok":
        return
    if spent > OVER_BUDGET_FACTOR * limit + 1.0:
        record["status"] = "timeout"
        record["message"] = f"ran {spent:.1f} s, past its time budget of {limit:g} s"
