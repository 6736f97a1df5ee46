"""No setting is silently ignored: every field of the scenario schema and every argument
of `LeakageAuditor.for_model` either acts or is refused, naming itself.

Derived from the schema, not from a list: the pydantic models are walked
(`fedsim.scenario.acts.schema_fields`), every field must be classified, and each one is
set to values other than its default (from its type; `SAMPLES` where a type does not
say which values are valid) under every combination of the modes it may depend on
(`mode_trees`: engine, Ray address and audit worker; protocol, data domain and model;
each with every set of attacks, with and without secure aggregation). Each try is
refused in one line naming the field, or accepted with a changed resolved scenario; no
field is refused everywhere. Where a field acts in some modes only, a tiny in-process
federation shows that it changes the records in a mode where it acts (`NO_RECORDS` says
why the others cannot, and which test shows what they do).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import itertools
import json
import tomllib
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from attacks import ATTACKS, GradientAttack
from fedsim.auditor.arguments import FOR_MODEL_ACTS, refuse_ignored_arguments
from fedsim.auditor.setup import AuditSetup
from fedsim.auditor.strategy import LeakageAuditor
from fedsim.cli import main as cli_main
from fedsim.errors import ConfigError
from fedsim.flower.runtimes.loopback_cluster import free_port
from fedsim.flower.simulation import simulate
from fedsim.records import LEAKAGE_FILE, RECONSTRUCTIONS_DIR, ROUNDS_FILE, RunRecorder, read_jsonl
from fedsim.scenario.acts import ACTS, refuse_ignored, schema_fields
from fedsim.scenario.audit import AuditConfig
from fedsim.scenario.config import Scenario
from fedsim.scenario.loading import validate_scenario

REPO = Path(__file__).resolve().parents[1]

SAMPLES: dict[str, list[Any]] = {
    "name": ["other"],
    "device": ["cpu"],
    "output": ["elsewhere"],
    "defenses": [["laplacian:b=0.01"]],
    "data.dataset": ["fashion-mnist"],
    "data.root": ["data"],
    "model.name": ["convbig"],
    "model.checkpoint": ["start.pt"],
    "attacks.*.name": ["l1"],
    "attacks.*.label": ["renamed"],
    "attacks.*.overrides": [{"lr": 0.05}],
    "simulation.address": ["127.0.0.1:6379"],
    "protocol.betas": [[0.5, 0.9]],
    # a limit the tiny runs reach, so that the records show it
    "audit.budget.seconds": [1e-9],
    "federation.secagg.quantization_range": [2**20],  # 2 levels would round to nothing
    "attacks.*.budget.seconds": [1e-9],
}
"""Values for the fields whose type does not say which strings or tables are valid."""

COMPANIONS: dict[str, tuple[str, Any]] = {"data.partition": ("data.alpha", 1.0)}
"""A field whose other values need a second one set with it (a Dirichlet partition, its
concentration)."""

_NUMBERS = (1, 2, 3, 8, 2**25, 0.5, 0.25, 2.0)


def field_info(path: str) -> Any:
    """The pydantic FieldInfo of a dotted schema path (`*` for a list item)."""
    model: Any = Scenario
    *parents, last = [p for p in path.split(".") if p != "*"]
    for part in parents:
        model = _nested_model(model.model_fields[part].annotation)
    return model.model_fields[last]


def _nested_model(annotation: Any) -> type[BaseModel]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(m for a in typing.get_args(annotation) if (m := _nested_model_or_none(a)))


def _nested_model_or_none(annotation: Any) -> type[BaseModel] | None:
    try:
        return _nested_model(annotation)
    except StopIteration:
        return None


def _candidates(annotation: Any) -> list[Any]:
    """Values of the type `annotation` names, before its constraints are checked."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return list(typing.get_args(annotation))
    if origin is typing.Annotated:
        return _candidates(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [v for arg in typing.get_args(annotation) for v in _candidates(arg)]
    if origin is list:
        return [[v] for v in _candidates(typing.get_args(annotation)[0])]
    if annotation is bool:
        return [True, False]
    if annotation is int:
        return [v for v in _NUMBERS if isinstance(v, int)]
    if annotation is float:
        return [float(v) for v in _NUMBERS]
    return []


def values_for(path: str) -> list[Any]:
    """Up to two values of the field other than its default, valid for the field alone."""
    if path in SAMPLES:
        return SAMPLES[path]
    info = field_info(path)
    default = info.get_default(call_default_factory=True)
    annotation = info.annotation
    adapter = TypeAdapter(
        typing.Annotated[annotation, *info.metadata] if info.metadata else annotation
    )
    values = []
    for value in _candidates(info.annotation):
        try:
            adapter.validate_python(value, strict=True)
        except ValidationError:
            continue
        if (type(value), value) != (type(default), default) and value not in values:
            values.append(value)
    assert values, f"{path}: give a sample value in SAMPLES (its type does not say)"
    return values[:2]


def with_value(raw: dict, path: str, value: Any) -> dict | None:
    """A copy of `raw` with `path` set (an attack's field on the first attack); None where
    the scenario has no place for it (no attack) or already holds `value`."""
    tree = copy.deepcopy(raw)
    node: Any = tree
    *parents, last = path.split(".")
    for part in parents:
        if part == "*":
            if not node:
                return None
            node = node[0]
        else:
            node = node.setdefault(part, [] if part == "attacks" else {})
    if last in node and (type(node[last]), node[last]) == (type(value), value):
        return None
    node[last] = value
    return tree


def checked(raw: dict) -> Scenario:
    return refuse_ignored(validate_scenario(raw, registered_attacks=True))


def resolved(scenario: Scenario) -> str:
    """The resolved scenario as written (1 and 1.0 differ: a count and a fraction)."""
    return json.dumps(scenario.model_dump(mode="json"), sort_keys=True)


PROTOCOLS = [
    {"kind": "fedsgd"},
    {"kind": "fedavg"},
    {"kind": "fedavg", "optimizer": "adam", "local_steps": 2},
    {"kind": "fedavg", "momentum": 0.5, "local_steps": 2},
]
"""The protocols, and the clients' local optimisers some settings depend on."""
ATTACK_SETS = [[], ["l2"], ["bayes"], ["gradinversion"], ["analytic-fc"], ["adapted"]]
DATA = [("mnist-sample", "cnn"), ("adult-sample", "mlp"), ("mnist", "convnet64")]


def mode_tree(
    engine: str = "inprocess",
    worker: str = "thread",
    address: str | None = None,
    protocol: dict | None = None,
    data: tuple[str, str] = DATA[0],
    names: list[str] = (),
    secure: bool = False,
    defenses: tuple[str, ...] = ("gaussian:sigma=0.01",),
) -> dict | None:
    """The raw scenario of one mode; None where the combination is not one (a worker
    without attacks, an address without Ray)."""
    attacked = bool(names)
    if (worker != "thread" and not attacked) or (address and "ray" not in (engine, worker)):
        return None
    tree: dict[str, Any] = {
        "defenses": list(defenses),
        "data": {"dataset": data[0]},
        "model": {"name": data[1]},
        "protocol": protocol or {"kind": "fedsgd"},
        "federation": {"secure_aggregation": secure},
        "attacks": [{"name": n} for n in names],
        "simulation": {"engine": engine, **({"address": address} if address else {})},
    }
    if attacked:
        tree["audit"] = {"worker": worker}
    return tree


def mode_trees() -> list[dict]:
    """Every combination of the modes a setting may depend on, in two families that share
    the attacks and secure aggregation: where the federation runs (engine, Ray address,
    audit worker), and what it computes (protocol, data set and model); the rest of each
    family at its default. No setting depends on both the engine and the data."""
    shared = list(itertools.product(ATTACK_SETS, (False, True)))
    runtime = itertools.product(
        ("inprocess", "ray"), ("thread", "inline", "ray"), (None, "127.0.0.1:6379"), shared
    )
    computed = itertools.product(PROTOCOLS, DATA, shared)
    dp = ("dpsgd:clip=1,sigma=1",)  # DP claims, whose bound settings act only here
    trees = [
        *(mode_tree(e, w, a, names=n, secure=s) for e, w, a, (n, s) in runtime),
        *(mode_tree(protocol=p, data=d, names=n, secure=s) for p, d, (n, s) in computed),
        *(mode_tree(protocol=p, names=n, defenses=dp) for p in PROTOCOLS[:2] for n in ([], ["l2"])),
    ]
    return [t for t in trees if t is not None]


def test_every_field_of_the_schema_and_every_for_model_argument_is_classified() -> None:
    fields = set(schema_fields(Scenario))
    assert {"attacks.*.budget.iterations", "federation.secagg.modulus_range"} <= fields
    assert fields - set(ACTS) == set(), "classify these in fedsim.scenario.acts.ACTS"
    assert set(ACTS) - fields == set(), "ACTS names fields the schema does not have"
    arguments = {
        name
        for method in (AuditSetup.for_model, LeakageAuditor.for_model)
        for name, p in inspect.signature(method).parameters.items()
        if p.kind is not p.VAR_KEYWORD and name not in ("cls", "self")
    }
    assert arguments == set(FOR_MODEL_ACTS), "classify in fedsim.auditor.arguments"


SIDE_MODES = [
    {"data": {"partition": "dirichlet", "alpha": 1.0}},
    {"model": {"checkpoint": "start.pt"}},
    {"federation": {"strategy": {"name": "fedadam"}}},
]
"""Modes only one field's needs depend on, added to every mode with one attack (and no
secure aggregation, which takes FedAvg only)."""


def test_every_field_under_every_mode_acts_or_is_refused_naming_itself() -> None:
    trees = mode_trees()
    trees += [
        _merged(tree, side)
        for tree in trees
        if len(tree["attacks"]) == 1 and not tree["federation"]["secure_aggregation"]
        for side in SIDE_MODES
    ]
    bases = [(tree, resolved(checked(tree))) for tree in trees]  # each mode is accepted
    accepted: dict[str, int] = dict.fromkeys(ACTS, 0)
    refused: dict[str, int] = dict.fromkeys(ACTS, 0)
    for path in ACTS:
        shown = path.replace("*", "0")
        for value in values_for(path):
            for tree, before in bases:
                changed = with_value(tree, path, value)
                if changed is None:
                    continue
                if path in COMPANIONS:
                    changed = with_value(changed, *COMPANIONS[path]) or changed
                try:
                    scenario = checked(changed)
                except ConfigError as error:
                    message = str(error)
                    assert "\n" not in message and shown in message, (path, value, message)
                    refused[path] += 1
                else:
                    assert resolved(scenario) != before, (path, value, changed)
                    accepted[path] += 1
    never = sorted(path for path, count in accepted.items() if count == 0)
    assert never == [], f"refused in every mode: {never}"
    conditional = {path for path, acts in ACTS.items() if acts.needs}
    assert conditional <= {path for path, count in refused.items() if count}


def test_a_scenario_from_a_user_names_the_first_ignored_field_and_the_others() -> None:
    with pytest.raises(ConfigError) as caught:
        checked(
            {
                "simulation": {"engine": "inprocess", "num_cpus": 2, "cpus_per_client": 1},
                "attacks": [{"name": "analytic-fc", "budget": {"iterations": 5}}],
                "audit": {"worker": "inline", "pending": 3},
            }
        )
    optimising = sorted(n for n, cls in ATTACKS.items() if issubclass(cls, GradientAttack))
    assert str(caught.value) == (
        "scenario: attacks.0.budget.iterations caps the attack's steps, but its attack does"
        f" not read it: remove it (attacks that read it: {', '.join(optimising)})"
        " (also ignored: audit.pending, simulation.cpus_per_client, simulation.num_cpus)"
    )


# ---------------------------------------------------------------- the CLI and the records

TINY = {
    "name": "tiny",
    "seed": 1,
    "device": "cpu",
    "defenses": ["gaussian:sigma=0.01"],
    "data": {"dataset": "mnist-sample", "eval_samples": 10},
    "federation": {"clients": 2, "rounds": 2},
    "protocol": {"batch_size": 1},
    "attacks": [{"name": "l2"}],
    "audit": {"grids": False, "budget": {"iterations": 2}},
    "simulation": {"engine": "inprocess"},
}


def test_an_address_under_the_in_process_engine_is_refused_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The quickstart pointed at a cluster (nothing listens there): exit 2 in one line."""
    address = f"127.0.0.1:{free_port()}"
    out = tmp_path / "run"
    code = cli_main(
        [
            "run",
            str(REPO / "scenarios" / "quickstart.toml"),
            "--set",
            f"simulation.address={address}",
            "--out",
            str(out),
        ]
    )
    assert code == 2 and not out.exists()
    assert capsys.readouterr().err.splitlines() == [
        "fedsim run: scenario: simulation.address joins a Ray cluster, but simulation.engine is"
        ' "inprocess" and audit.worker is "thread": set simulation.engine = "ray" (or'
        ' audit.worker = "ray")'
    ]


@pytest.mark.usefixtures("one_thread")
def test_the_first_line_and_the_resolved_scenario_say_what_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario_file = tmp_path / "tiny.toml"
    import tomli_w

    scenario_file.write_text(tomli_w.dumps(TINY))
    out = tmp_path / "run"
    assert cli_main(["run", str(scenario_file), "--out", str(out)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (
        f"fedsim run: tiny → {out}; clients in process, attacks in a thread, device cpu"
    )
    stored = tomllib.loads((out / "scenario.toml").read_text())
    runs = stored.pop("run")["runs"]
    # only what acts is stored, so the stored scenario is one a user may give
    assert "cpus_per_client" not in stored["simulation"] and "secagg" not in stored["federation"]
    assert refuse_ignored(validate_scenario(stored)) == checked(TINY)
    assert runs == {
        "engine": "inprocess",
        "ray": "not used",
        "audit_worker": "thread",
        "device": "cpu",
    }

    # Resumed on a cluster's settings that the stored engine ignores: refused; a stored
    # setting that the resumed engine ignores is dropped, and said so.
    with pytest.raises(ConfigError, match="simulation.num_cpus sizes a local Ray instance"):
        from fedsim.commands.run import _resumed_scenario

        _resumed_scenario(out, ["simulation.num_cpus=2"])
    stored = tomllib.loads((out / "scenario.toml").read_text())
    stored["simulation"].update(engine="ray", address="127.0.0.1:6379")
    (out / "scenario.toml").write_text(tomli_w.dumps(stored))
    code = cli_main(["run", "--resume", str(out), "--set", "simulation.engine='inprocess'"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0] == (
        "fedsim run: dropped from the stored scenario: simulation.address joins a Ray"
        ' cluster, but simulation.engine is "inprocess" and audit.worker is "thread": set'
        ' simulation.engine = "ray" (or audit.worker = "ray")'
    )


def test_for_model_refuses_arguments_its_protocol_and_worker_ignore() -> None:
    import torch

    def net() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))

    common = {"input_shape": (4,), "num_classes": 3, "batch_size": 2, "domain": "features"}
    with pytest.raises(ConfigError) as caught:
        LeakageAuditor.for_model(
            torch.nn.Identity(),  # refused before the strategy is used
            net,
            protocol="fedsgd",
            lr=0.1,
            local_steps=3,
            audit={"worker": "inline", "pending": 4, "threat": {"feature_stats_known": True}},
            delta=1e-6,
            **common,
        )
    assert str(caught.value) == (
        'for_model: local_steps counts a client\'s local steps, but protocol is "fedsgd": set'
        ' protocol = "fedavg" (also ignored: delta, audit.threat.feature_stats_known,'
        " audit.pending)"
    )
    # every audit field, under every mode a for_model call can be in
    for kind, domain, out_dir, names, worker in itertools.product(
        ("fedsgd", "fedavg"),
        ("image", "features"),
        (None, "out"),
        ([], ["l2"], ["analytic-fc"]),
        ("thread", "inline", "ray"),
    ):
        shape = (1, 2, 2) if domain == "image" else (4,)
        setup = AuditSetup.for_model(
            net,
            **{**common, "input_shape": shape, "domain": domain},
            protocol=kind,
            lr=0.1,
            local_steps=1 if kind == "fedavg" else None,
            attacks=names,
        )
        given = {"attacks": names, "protocol": kind}
        for path in (p for p in ACTS if p.startswith("audit.")):
            field = path.removeprefix("audit.")
            for value in values_for(path):
                tree = with_value({"worker": worker}, field, value)
                if tree is None:
                    continue
                try:
                    audit = AuditConfig.model_validate(tree)
                    refuse_ignored_arguments(
                        given,
                        dataclasses.replace(setup, audit=audit),
                        out_dir=out_dir,
                        delta=1e-5,
                        privacy=None,
                    )
                except (ConfigError, ValidationError) as error:
                    assert field.split(".")[-1] in str(error), (path, error)


# ------------------------------------------------------- records change where a field acts

RUNNABLE = [
    {},
    # one attack may set its own budget while the other reads the audit's
    {"attacks": [{"name": "l2"}, {"name": "l1"}]},
    {"protocol": {"kind": "fedavg", "batch_size": 2}},
    {"protocol": {"kind": "fedavg", "batch_size": 2, "optimizer": "adam", "local_steps": 2}},
    {"protocol": {"kind": "fedavg", "batch_size": 2, "momentum": 0.5, "local_steps": 2}},
    {"attacks": [{"name": "bayes"}]},
    {"attacks": [{"name": "gradinversion"}]},
    {
        "data": {"dataset": "adult-sample", "eval_samples": 10},
        "model": {"name": "mlp"},
        "audit": {"grids": None},  # feature rows draw no grids
    },
    {"data": {"partition": "dirichlet", "alpha": 1.0}},
    {"federation": {"strategy": {"name": "fedadam"}}},
    {"federation": {"secure_aggregation": True}},
    {"defenses": ["dpsgd:clip=1,sigma=1"]},
]
"""Modes a tiny federation runs in, in process, in about a second each."""

NO_RECORDS = {
    "data.root": "reads files: tests/test_data_*.py",
    "data.download": "downloads: tests/test_data_download.py",
    "model.checkpoint_round": "needs a checkpoint: tests/test_checkpoint_start.py",
    "federation.secagg.num_shares": "masks cancel exactly: the records are equal; test_secagg",
    "federation.secagg.reconstruction_threshold": "as num_shares: equal records; test_secagg",
    "federation.secagg.modulus_range": "no wrap-around, equal records; test_secagg",
    "audit.worker": "where attacks run, equal records by design; [run.runs] says which",
    "audit.pending": "back-pressure, equal records: tests/test_reliability_faults.py",
    "audit.cpus": "Ray task resources: tests/test_run_failures.py (task_resources)",
    "audit.gpus": "Ray task resources: tests/test_run_failures.py (task_resources)",
    "simulation.cpus_per_client": "Ray actor resources: tests/test_ray_cluster.py",
    "simulation.gpus_per_client": "Ray actor resources: tests/test_ray_cluster.py",
    "simulation.num_cpus": "a local Ray's size: tests/test_run_failures.py (init_args)",
    "simulation.address": "the nodes in rounds.jsonl: tests/test_ray_cluster.py",
    "simulation.connect_timeout": "the probe's deadline: tests/test_ray_cluster.py",
}
"""Fields that act in some modes only and whose effect the records cannot show, and the
test that shows it."""


def _merged(base: dict, extra: dict) -> dict:
    tree = copy.deepcopy(base)
    for key, value in extra.items():
        if value is None:
            tree.pop(key, None)
        elif isinstance(value, dict) and isinstance(tree.get(key), dict):
            tree[key] = _merged(tree[key], value)
        else:
            tree[key] = copy.deepcopy(value)
    return tree


def _outcome(raw: dict, out: Path) -> tuple:
    """What a run leaves: its records without wall-clock seconds, its images."""
    simulate(checked(raw), RunRecorder(out))
    lines = []
    for name in (ROUNDS_FILE, LEAKAGE_FILE):
        for record in read_jsonl(out / name):
            record.pop("seconds", None)
            lines.append(record)
    images = (
        sorted(p.name for p in (out / RECONSTRUCTIONS_DIR).glob("*"))
        if (out / RECONSTRUCTIONS_DIR).is_dir()
        else []
    )
    return lines, images


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread (and the machine's cores stay shared)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_each_field_changes_the_records_in_a_mode_where_it_acts(tmp_path: Path) -> None:
    conditional = sorted(path for path, acts in ACTS.items() if acts.needs)
    assert set(NO_RECORDS) <= set(conditional), "NO_RECORDS names a field that always acts"
    baselines: dict[int, tuple] = {}
    shown = []
    for path in (p for p in conditional if p not in NO_RECORDS):
        found = False
        default = field_info(path).get_default(call_default_factory=True)
        for index, mode in enumerate(RUNNABLE):
            base = _merged(TINY, mode)
            for value in [*values_for(path), default]:
                changed = with_value(base, path, value)
                if changed is None:
                    continue
                try:
                    checked(changed)
                except ConfigError:
                    continue
                if index not in baselines:
                    baselines[index] = _outcome(base, tmp_path / f"base{index}")
                if _outcome(changed, tmp_path / f"{path}-{index}-{value}") != baselines[index]:
                    found = True
                    break
            if found:
                shown.append(path)
                break
        assert found, f"{path}: no runnable mode where it changes the records"
    assert len(shown) + len(NO_RECORDS) == len(conditional)
