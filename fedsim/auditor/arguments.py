"""Where every argument of `LeakageAuditor.for_model` acts; one given where it would do
nothing is refused before the auditor is built.

`FOR_MODEL_ACTS` classifies each argument as a scenario's fields are classified
(`fedsim.scenario.acts`): what it does and the modes it needs, read off the other
arguments (`protocol`, `domain`, `attacks`, `audit.worker`, `out_dir`). The fields of
`audit` are checked as a scenario's `audit.*` are, in deployment mode: there is no
scenario data, so `audit.threat.feature_stats_known` is refused (the `domain` argument
states the statistics the server holds).

A new argument of either `for_model` must be classified here too
(`tests/test_settings_act.py` fails until it is): one that only FedAvg's local training
reads is `"name": Acts("does what", (m.FEDAVG,))`, one that acts in every mode `ALWAYS`;
a new condition is a `fedsim.scenario.modes.Need` (e.g. `setting_is(...)`). An argument
is given when it is passed and not None.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attacks.domain import ImageDomain
from fedsim.auditor.flower_dp import CentralDp, LocalDp
from fedsim.auditor.setup import AuditSetup
from fedsim.errors import ConfigError
from fedsim.scenario import modes as m
from fedsim.scenario.acts import ALWAYS, Acts, given_fields, ignored_because, one_line

DEFAULT_DELTA = 1e-5
"""`LeakageAuditor.for_model`'s default δ (a δ other than it counts as given)."""

FOR_MODEL_ACTS: Mapping[str, Acts] = {
    "inner": ALWAYS,
    "model_fn": ALWAYS,
    "out_dir": ALWAYS,
    "on_round_audited": ALWAYS,
    # where it acts depends on the strategy `inner` wraps: checked by `_delta_unused`
    "delta": Acts("is the δ of the ε of a Flower DP wrapper without an accountant"),
    "input_shape": ALWAYS,
    "num_classes": ALWAYS,
    "batch_size": ALWAYS,
    "domain": ALWAYS,
    "protocol": ALWAYS,
    "lr": ALWAYS,
    "local_steps": Acts("counts a client's local steps", (m.FEDAVG,)),
    "local_batch_size": Acts("sizes a client's local steps", (m.FEDAVG,)),
    "optimizer": ALWAYS,  # under fedsgd a plain SGD factory still carries lr
    "lr_schedule": Acts("sets the rate of each local step", (m.FEDAVG,)),
    "shuffle": Acts("shuffles the clients' local mini-batches", (m.FEDAVG,)),
    "drop_last": Acts("drops a short last local mini-batch", (m.FEDAVG,)),
    "attacks": ALWAYS,
    "defense": ALWAYS,
    "mechanism": ALWAYS,
    "audit": ALWAYS,
    "seed": ALWAYS,
    "device": ALWAYS,
    "proxy_data": ALWAYS,  # the proxy clients are attacked in every mode with attacks
}

FOR_MODEL_NAMES = {"protocol.kind": "protocol", "data.dataset": "domain", "attacks": "attacks"}
"""How `for_model` names the settings a mode is chosen by."""


def deployment_modes(setup: AuditSetup, records: bool, privacy: object | None = None) -> m.Modes:
    """The modes of an auditor built by `for_model` (`records`: an `out_dir` is given;
    `privacy`: the Flower DP tool it recognised)."""
    import torch

    model = setup.build_model()
    return m.Modes(
        engine=None,
        worker=setup.audit.worker,
        protocol=setup.protocol.kind,
        domain="images" if isinstance(setup.domain, ImageDomain) else "rows",
        dataset=setup.domain.kind,
        attacks=tuple(m.attack_reads(a) for a in setup.attacks),
        model=type(model).__name__,
        batch_norm=any(
            isinstance(module, torch.nn.modules.batchnorm._BatchNorm) for module in model.modules()
        ),
        records=records,
        privacy_claims=isinstance(privacy, LocalDp),
        names=FOR_MODEL_NAMES,
    )


def refuse_ignored_arguments(
    given: Mapping[str, Any],
    setup: AuditSetup,
    *,
    out_dir: str | Path | None,
    delta: float,
    privacy: object | None,
) -> None:
    """ConfigError naming the first argument (of `given`, the keywords of
    `AuditSetup.for_model`; and `delta`) or `audit` field that does nothing here."""
    modes = deployment_modes(setup, records=out_dir is not None, privacy=privacy)
    named = [name for name, value in given.items() if value is not None]
    reasons = [(n, r) for n in named if (r := ignored_because(n, modes, FOR_MODEL_ACTS))]
    if delta != DEFAULT_DELTA and (why := _delta_unused(privacy, delta)):
        reasons.append(("delta", f"delta {FOR_MODEL_ACTS['delta'].what}, but {why}: remove it"))
    for path in given_fields(setup.audit, "audit."):
        if reason := ignored_because(path, modes):
            reasons.append((path, reason))
    if reasons:
        raise ConfigError(f"for_model: {one_line(reasons)}")


def _delta_unused(privacy: object | None, delta: float) -> str | None:
    """Why `delta` does not enter the ε recorded with `privacy` (None when it does)."""
    if isinstance(privacy, CentralDp):
        return None if privacy.delta == delta else f"its accountant sets δ = {privacy.delta:g}"
    if privacy is None:
        return "no Flower DP wrapper is around the strategy"
    return f"{type(privacy).__name__} carries its own δ"
