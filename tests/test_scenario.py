"""Scenario files: validation with one-line errors naming the field, overrides, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsim.errors import ConfigError
from fedsim.scenario import load_scenario, parse_override, scenario_from_resolved, scenario_to_toml
from fedsim.scenario.loading import validate_scenario

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "scenarios" / "quickstart.toml"

# (raw scenario, the dotted field the error must name)
MALFORMED = [
    ({"bogus": 1}, "bogus"),
    ({"data": {"datasett": "mnist"}}, "data.datasett"),
    ({"data": {"partition": "shards"}}, "data.partition"),
    ({"data": {"partition": "dirichlet"}}, "data.alpha"),
    ({"data": {"partition": "iid", "alpha": 0.5}}, "data.alpha"),
    ({"data": {"partition": "dirichlet", "alpha": 0}}, "data.alpha"),
    ({"federation": {"clients": 0}}, "federation.clients"),
    ({"federation": {"clients": "four"}}, "federation.clients"),
    ({"federation": {"clients_per_round": 0}}, "federation.clients_per_round"),
    ({"federation": {"clients_per_round": 1.5}}, "federation.clients_per_round"),
    ({"federation": {"clients": 4, "clients_per_round": 5}}, "federation.clients_per_round"),
    ({"federation": {"rounds": -1}}, "federation.rounds"),
    ({"protocol": {"kind": "fedprox"}}, "protocol.kind"),
    ({"protocol": {"lr": 0}}, "protocol.lr"),
    ({"protocol": {"batch_size": 0}}, "protocol.batch_size"),
    ({"protocol": {"local_steps": 5}}, "protocol.local_steps"),
    (
        {"protocol": {"kind": "fedavg", "batch_size": 2, "local_batch_size": 4}},
        "protocol.local_batch_size",
    ),
    ({"defenses": "gaussian"}, "defenses"),
    ({"attacks": [{"overrides": {}}]}, "attacks.0.name"),
    ({"attacks": [{"name": "l2", "iterations": 3}]}, "attacks.0.iterations"),
    ({"attacks": [{"name": "l2", "budget": {"iterations": 0}}]}, "attacks.0.budget.iterations"),
    ({"attacks": [{"name": "l2"}, {"name": "l2"}]}, "attacks"),
    ({"audit": {"rounds": {"every": 2, "first": 3}}}, "audit.rounds"),
    ({"audit": {"rounds": {"rounds": [0, 2]}}}, "audit.rounds.rounds.0"),
    ({"audit": {"rounds": {"log": 0}}}, "audit.rounds.log"),
    ({"audit": {"rounds": {"log": 3, "every": 2}}}, "audit.rounds"),
    ({"protocol": {"kind": "fedsgd", "local_epochs": 2}}, "protocol.local_epochs"),
    (
        {"protocol": {"kind": "fedavg", "local_epochs": 2, "local_steps": 3}},
        "protocol.local_steps",
    ),
    ({"protocol": {"kind": "fedavg", "local_epochs": 0}}, "protocol.local_epochs"),
    ({"protocol": {"kind": "fedsgd", "momentum": 0.9}}, "protocol.momentum"),
    ({"protocol": {"kind": "fedsgd", "optimizer": "adam"}}, "protocol.optimizer"),
    ({"protocol": {"kind": "fedavg", "optimizer": "rmsprop"}}, "protocol.optimizer"),
    ({"protocol": {"kind": "fedavg", "betas": [0.9, 0.99]}}, "protocol.betas"),
    ({"protocol": {"kind": "fedavg", "optimizer": "adam", "momentum": 0.9}}, "protocol.momentum"),
    ({"protocol": {"kind": "fedavg", "momentum": -0.5}}, "protocol.momentum"),
    ({"protocol": {"kind": "fedavg", "nesterov": True}}, "protocol.nesterov"),
    (
        {"protocol": {"kind": "fedavg", "optimizer": "adam", "betas": [0.9, 1.0]}},
        "protocol.betas.1",
    ),
    ({"model": {"checkpoint_round": 3}}, "model.checkpoint_round"),
    ({"model": {"checkpoint": ""}}, "model.checkpoint"),
    ({"federation": {"keep_checkpoints": {"log": 10}}}, "federation.keep_checkpoints.log"),
    ({"audit": {"clients": {"sample": 0}}}, "audit.clients.sample"),
    ({"audit": {"threat": {"labels": "known"}}}, "audit.threat.labels"),
    ({"audit": {"budget": {"seconds": -1}}}, "audit.budget.seconds"),
    ({"audit": {"worker": "process"}}, "audit.worker"),
    ({"simulation": {"engine": "dask"}}, "simulation.engine"),
    ({"simulation": {"gpus_per_client": -1}}, "simulation.gpus_per_client"),
    ({"seed": -3}, "seed"),
    ({"device": "tpu"}, "device"),
]


@pytest.mark.parametrize(("raw", "field"), MALFORMED, ids=[f for _, f in MALFORMED])
def test_malformed_scenario_names_the_field(raw: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_scenario(raw)
    message = str(caught.value)
    assert message.startswith(f"scenario: {field}: "), message
    assert "\n" not in message


def test_defaults_are_a_valid_scenario() -> None:
    scenario = validate_scenario({})
    assert scenario.federation.per_round() == scenario.federation.clients
    assert scenario.defense_label == "none"


def test_clients_per_round_count_or_fraction() -> None:
    assert (
        validate_scenario(
            {"federation": {"clients": 10, "clients_per_round": 3}}
        ).federation.per_round()
        == 3
    )
    assert (
        validate_scenario(
            {"federation": {"clients": 10, "clients_per_round": 0.5}}
        ).federation.per_round()
        == 5
    )


def test_log_schedule_is_a_few_round_numbers_per_decade() -> None:
    def schedule(per_decade: int, last: int) -> list[int]:
        raw = {"federation": {"rounds": last}, "audit": {"rounds": {"log": per_decade}}}
        audit = validate_scenario(raw).audit.rounds
        return [r for r in range(1, last + 1) if audit.selects(r)]

    assert schedule(3, 1000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    assert schedule(1, 500) == [1, 10, 100]
    assert schedule(2, 100) == [1, 3, 10, 30, 100]
    assert not validate_scenario({"audit": {"rounds": {"log": 3}}}).audit.rounds.selects(0)


def test_local_epochs_are_passes_over_the_rounds_batch() -> None:
    protocol = {"kind": "fedavg", "batch_size": 10, "local_batch_size": 4, "local_epochs": 2}
    scenario = validate_scenario({"protocol": protocol})
    assert scenario.protocol.local_steps == 2 * 3  # ⌈10 / 4⌉ chunks per pass
    again = scenario_from_resolved(scenario_to_toml(scenario))
    assert again.protocol == scenario.protocol
    whole = validate_scenario({"protocol": {"kind": "fedavg", "batch_size": 8, "local_epochs": 3}})
    assert whole.protocol.local_steps == 3


def test_quickstart_loads() -> None:
    scenario = load_scenario(QUICKSTART)
    assert scenario.data.dataset == "mnist-sample"
    assert scenario.federation.clients == 16
    assert scenario.protocol.kind == "fedavg" and scenario.protocol.local_steps == 3
    assert [a.name for a in scenario.attacks] == ["bayes"]
    assert scenario.audit.rounds.through(scenario.federation.rounds) == [1, 2, 5, 10, 20, 50]
    assert scenario.defenses and scenario.defenses[0].startswith("gaussian")


@pytest.mark.parametrize(
    ("text", "keys", "value"),
    [
        ("protocol.lr=0.05", ["protocol", "lr"], 0.05),
        ("federation.rounds=7", ["federation", "rounds"], 7),
        ("audit.grids=false", ["audit", "grids"], False),
        ("data.dataset=mnist", ["data", "dataset"], "mnist"),
        ('attacks.0.name="l2"', ["attacks", "0", "name"], "l2"),
        ('defenses=["gaussian:sigma=0.1"]', ["defenses"], ["gaussian:sigma=0.1"]),
        ("audit.rounds.rounds=[1, 3]", ["audit", "rounds", "rounds"], [1, 3]),
    ],
)
def test_parse_override_reads_toml_values(text: str, keys: list[str], value: object) -> None:
    assert parse_override(text) == (keys, value)


def test_overrides_apply_in_order() -> None:
    scenario = load_scenario(
        QUICKSTART,
        ["protocol.lr=0.5", "protocol.lr=0.25", "attacks.0.name=cos", "audit.budget.iterations=3"],
    )
    assert scenario.protocol.lr == 0.25
    assert scenario.attacks[0].name == "cos"
    assert scenario.audit.budget_for(scenario.attacks[0]).iterations == 3


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("protocol.lrr=0.1", "protocol.lrr"),
        ("federation.clients=0", "federation.clients"),
        ("attacks.0.budget.iterations=0", "attacks.0.budget.iterations"),
    ],
)
def test_bad_override_names_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^scenario: {field}: "):
        load_scenario(QUICKSTART, [override])


@pytest.mark.parametrize(
    "override", ["protocol.lr", "=3", "protocol..lr=1", "attacks.9.name=l2", "seed.x=1"]
)
def test_malformed_override_is_a_config_error(override: str) -> None:
    with pytest.raises(ConfigError, match=r"^--set "):
        load_scenario(QUICKSTART, [override])


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_scenario(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_scenario(broken)


def test_resolved_scenario_round_trips() -> None:
    scenario = load_scenario(QUICKSTART, ["federation.rounds=2"])
    text = scenario_to_toml(scenario, {"seed": scenario.seed, "versions": {"fedsim": "x"}})
    assert "[run]" in text
    assert scenario_from_resolved(text) == scenario
