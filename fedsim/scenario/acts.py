"""Where every scenario setting acts: a setting given where it would do nothing is refused.

`ACTS` holds one entry per field of the schema (`fedsim.scenario.config`), by dotted
path (`*` for an attack's index): what the field does, and the needs
(`fedsim.scenario.modes`) under which it does it; `ALWAYS` for a field that acts in
every mode. A field that a user sets — explicitly, or to a value other than its default
— in a mode where one of its needs fails is refused before anything starts, in one line
that names the field, the setting that ignores it and what would make it act:

    simulation.address joins a Ray cluster, but simulation.engine is "inprocess" and
    audit.worker is "thread": set simulation.engine = "ray" (or audit.worker = "ray")

A field the schema gains must be classified here (`tests/test_settings_act.py` walks the
schema and fails on one that is not).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from fedsim.errors import ConfigError
from fedsim.scenario import modes as m
from fedsim.scenario.config import Scenario
from fedsim.scenario.modes import Modes, Need


@dataclass(frozen=True)
class Acts:
    """What a field does (`what`, completing "<field> …"), and where: every need holds."""

    what: str
    needs: tuple[Need, ...] = ()


ALWAYS = Acts("")
"""Acts in every mode (a run's name, seed, data, model, protocol, …)."""

_ATTACKS_ACT = (m.HAS_ATTACKS,)
"""Audit settings act only where some attack is configured (under secure aggregation the
attacks run on the aggregate the server sees)."""

ACTS: Mapping[str, Acts] = {
    "name": ALWAYS,
    "seed": ALWAYS,
    "device": ALWAYS,  # the server's evaluation, and the attacks
    "output": ALWAYS,
    "defenses": ALWAYS,
    "data.dataset": ALWAYS,
    "data.root": Acts("is where the data set's files are read", (m.DATA_FILES,)),
    "data.partition": ALWAYS,
    "data.alpha": Acts("sets the Dirichlet partition's concentration", (m.DIRICHLET,)),
    "data.eval_samples": ALWAYS,
    "data.download": Acts("fetches missing data-set files", (m.DATA_FILES,)),
    "model.name": ALWAYS,
    "model.checkpoint": ALWAYS,
    "model.checkpoint_round": Acts("numbers the checkpoint's round", (m.CHECKPOINT,)),
    "federation.clients": ALWAYS,
    "federation.clients_per_round": ALWAYS,
    "federation.rounds": ALWAYS,
    "federation.round_timeout": ALWAYS,
    "federation.secure_aggregation": ALWAYS,
    **{
        f"federation.secagg.{key}": Acts("configures SecAgg+", (m.SECURE_AGGREGATION,))
        for key in (
            "num_shares",
            "reconstruction_threshold",
            "clipping_range",
            "quantization_range",
            "modulus_range",
        )
    },
    "federation.strategy.name": ALWAYS,
    **{
        f"federation.strategy.{key}": Acts("is an option of the server strategy", (need,))
        for key in ("eta", "beta_1", "beta_2", "tau")
        for need in [m.strategy_takes(key)]
    },
    **{f"federation.keep_checkpoints.{key}": ALWAYS for key in ("every", "first", "rounds", "log")},
    "protocol.kind": ALWAYS,
    "protocol.lr": ALWAYS,
    "protocol.batch_size": ALWAYS,
    "protocol.local_steps": Acts("counts a client's local steps", (m.FEDAVG,)),
    "protocol.local_batch_size": Acts("sizes a client's local steps", (m.FEDAVG,)),
    "protocol.local_epochs": Acts("counts a client's local passes", (m.FEDAVG,)),
    "protocol.optimizer": Acts("names the clients' optimiser", (m.FEDAVG,)),
    "protocol.weight_decay": Acts("decays the clients' weights", (m.FEDAVG,)),
    "protocol.nesterov": Acts("sets SGD's Nesterov momentum", (m.FEDAVG, m.optimizer_is("sgd"))),
    "protocol.eps": Acts("sets Adam's eps", (m.FEDAVG, m.optimizer_is("adam", "adamw"))),
    # an optimiser's state (momentum buffer, moment averages) acts from the second step on
    "protocol.momentum": Acts(
        "sets SGD's momentum", (m.FEDAVG, m.optimizer_is("sgd"), m.STEPS_AFTER_THE_FIRST)
    ),
    "protocol.dampening": Acts(
        "dampens SGD's momentum",
        (m.FEDAVG, m.optimizer_is("sgd"), m.MOMENTUM, m.STEPS_AFTER_THE_FIRST),
    ),
    **{
        f"protocol.{key}": Acts(
            f"sets Adam's {key}",
            (m.FEDAVG, m.optimizer_is("adam", "adamw"), m.STEPS_AFTER_THE_FIRST),
        )
        for key in ("betas", "amsgrad")
    },
    "attacks.*.name": ALWAYS,
    "attacks.*.label": ALWAYS,
    "attacks.*.overrides": Acts("sets the attack's options", (m.OWN_OPTIONS,)),
    "attacks.*.budget.iterations": Acts(
        "caps the attack's steps", (m.read_by_this_attack("iterations"),)
    ),
    "attacks.*.budget.restarts": Acts(
        "sets the attack's restarts", (m.read_by_this_attack("restarts"),)
    ),
    "attacks.*.budget.seconds": ALWAYS,  # every attack is timed (one that overran is marked)
    **{
        f"audit.rounds.{key}": Acts("schedules the audited rounds", (m.HAS_ATTACKS,))
        for key in ("every", "first", "rounds", "log")
    },
    "audit.clients.sample": Acts(
        "samples the audited clients", (*_ATTACKS_ACT, m.INDIVIDUAL_UPDATES)
    ),
    "audit.threat.labels": Acts("grants the attacks the labels", (m.HAS_ATTACKS,)),
    "audit.threat.bn_stats_known": Acts(
        "grants batch-norm statistics",
        (*_ATTACKS_ACT, m.read_by_an_attack("bn_stats_known", "bn_statistics"), m.BATCH_NORM),
    ),
    "audit.threat.mechanism_known": Acts(
        "grants the defense's mechanism",
        (*_ATTACKS_ACT, m.read_by_an_attack("mechanism_known")),
    ),
    "audit.threat.local_hparams_known": Acts(
        "grants the clients' local steps and learning rate",
        (*_ATTACKS_ACT, m.FEDAVG, m.read_by_an_attack("local_hparams_known")),
    ),
    "audit.threat.kappa": Acts(
        "sets the baseline of the bound on reconstruction", (m.PRIVACY_CLAIMS,)
    ),
    "audit.threat.feature_stats_known": Acts(
        "grants the features' mean and std",
        (*_ATTACKS_ACT, m.ROWS, m.SCENARIO_DATA, m.read_by_an_attack("feature_statistics")),
    ),
    "audit.budget.iterations": Acts(
        "caps each attack's steps", (*_ATTACKS_ACT, m.read_by_an_attack("iterations"))
    ),
    "audit.budget.restarts": Acts(
        "sets each attack's restarts", (*_ATTACKS_ACT, m.read_by_an_attack("restarts"))
    ),
    "audit.budget.seconds": Acts(
        "caps each attack's time", (*_ATTACKS_ACT, m.read_by_an_attack("seconds"))
    ),
    "audit.worker": Acts("runs the attacks", _ATTACKS_ACT),
    "audit.pending": Acts(
        "bounds the rounds of attacks in flight", (*_ATTACKS_ACT, m.QUEUED_WORKER)
    ),
    "audit.cpus": Acts("reserves CPUs for each attack task", (*_ATTACKS_ACT, m.RAY_WORKER)),
    "audit.gpus": Acts("reserves GPUs for each attack task", (*_ATTACKS_ACT, m.RAY_WORKER)),
    "audit.grids": Acts("draws the reconstructions", (*_ATTACKS_ACT, m.IMAGES, m.RECORDS)),
    "simulation.engine": ALWAYS,
    "simulation.cpus_per_client": Acts("reserves CPUs for each client", (m.RAY_ENGINE,)),
    "simulation.gpus_per_client": Acts("reserves GPUs for each client", (m.RAY_ENGINE,)),
    "simulation.num_cpus": Acts("sizes a local Ray instance", (m.RAY_USED, m.LOCAL_RAY)),
    "simulation.address": Acts("joins a Ray cluster", (m.RAY_USED,)),
    "simulation.connect_timeout": Acts(
        "bounds the wait for a Ray cluster", (m.RAY_USED, m.CLUSTER)
    ),
}

_INDEX = re.compile(r"\.\d+(?=\.|$)")


def pattern(path: str) -> str:
    """`attacks.1.budget.iterations` → `attacks.*.budget.iterations` (the key of `ACTS`)."""
    return _INDEX.sub(".*", path)


def schema_fields(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every leaf field of a pydantic model, as `ACTS` keys: nested models (also optional
    ones and lists of them) are walked, everything else is a leaf."""
    for name, info in model.model_fields.items():
        nested = _model_in(info.annotation)
        if nested is None:
            yield f"{prefix}{name}"
        else:
            inner, listed = nested
            yield from schema_fields(inner, f"{prefix}{name}.{'*.' if listed else ''}")


def _model_in(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """(model, in a list) where `annotation` is a model, `model | None` or `list[model]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found[0], found[1] or get_origin(annotation) is list
    return None


@functools.cache
def _fields_of(model: type[BaseModel]) -> tuple[tuple[str, bool, Any], ...]:
    """(name, holds models, default) of each field of `model`."""
    return tuple(
        (name, _model_in(info.annotation) is not None, info.get_default(call_default_factory=True))
        for name, info in model.model_fields.items()
    )


def given_fields(
    model: BaseModel, prefix: str = "", explicit: bool = True, every: bool = False
) -> Iterator[str]:
    """The leaf fields of a validated model that differ from their default or (`explicit`)
    were given (`every`: all of them), as dotted paths with list indices
    (`attacks.0.budget.iterations`)."""
    for name, nested, default in _fields_of(type(model)):
        value = getattr(model, name)
        path = f"{prefix}{name}"
        if not nested:
            given = explicit and name in model.model_fields_set
            if every or given or value != default:
                yield path
        elif isinstance(value, BaseModel):
            yield from given_fields(value, f"{path}.", explicit, every)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from given_fields(item, f"{path}.{index}.", explicit, every)


def inert_fields(scenario: Scenario) -> list[str]:
    """Every field that does nothing in the scenario's modes, given or not."""
    return [p for p, _ in ignored_settings(scenario, given_fields(scenario, every=True))]


def ignored_because(path: str, modes: Modes, table: Mapping[str, Acts] | None = None) -> str | None:
    """Why the field at `path` does nothing in `modes` (one line), or None where it acts.
    `table`: the classification (`ACTS`, or `for_model`'s arguments)."""
    key = pattern(path)
    acts = (ACTS if table is None else table).get(key)
    if acts is None:
        raise KeyError(
            f"{key}: a setting nobody classified (fedsim.scenario.acts, fedsim.auditor.arguments)"
        )
    index = _attack_index(path)
    for need in acts.needs:
        if not need.holds(modes, index):
            why, fix = need.ignored(modes, index), need.fix(modes, index)
            return f"{path} {acts.what}, but {why}: {fix}"
    return None


def _attack_index(path: str) -> int | None:
    match = re.match(r"attacks\.(\d+)\.", path)
    return None if match is None else int(match.group(1))


def ignored_settings(
    scenario: Scenario, paths: Iterable[str] | None = None
) -> list[tuple[str, str]]:
    """(field, why it does nothing) for each given field (`paths`, default
    `given_fields(scenario)`) that does nothing in the scenario's modes, in order."""
    modes = m.of_scenario(scenario)
    paths = given_fields(scenario) if paths is None else paths
    reasons = ((p, ignored_because(p, modes)) for p in paths)
    return [(p, r) for p, r in reasons if r is not None]


def acts_in(scenario: Scenario, path: str) -> bool:
    """Whether the field at `path` acts in the scenario's modes."""
    return ignored_because(path, m.of_scenario(scenario)) is None


def refuse_ignored(scenario: Scenario) -> Scenario:
    """`scenario`, or ConfigError naming the first given field that would do nothing."""
    refusal = one_line(ignored_settings(scenario))
    if refusal:
        raise ConfigError(f"scenario: {refusal}")
    return scenario


def one_line(reasons: list[tuple[str, str]]) -> str:
    """The first reason, and the fields of the others ('' when there is none)."""
    if not reasons:
        return ""
    others = ", ".join(path for path, _ in reasons[1:])
    return reasons[0][1] + (f" (also ignored: {others})" if others else "")


def remove_fields(raw: dict[str, Any], paths: Iterable[str]) -> None:
    """Delete the dotted `paths` (list indices as numbers) from a raw scenario tree, so that
    validating it again gives those fields their defaults."""
    for path in paths:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.get(part, {})
        if isinstance(node, dict):
            node.pop(last, None)
