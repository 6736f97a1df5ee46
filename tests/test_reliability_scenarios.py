"""Malformed scenarios are refused at load time, before any data is read or engine starts.

Each case names the field the one-line error must start with and a fragment of the
accepted values; `fedsim run` prints that line and exits with status 2, leaving no
run directory behind. (tests/test_scenario.py holds 32 more structural cases.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w

from fedsim.cli import main as cli_main
from fedsim.errors import ConfigError
from fedsim.scenario.loading import validate_scenario

# (raw scenario, field named by the error, a fragment the message must contain)
MALFORMED = [
    # unknown names, with the accepted ones listed
    ({"data": {"dataset": "imagenet"}}, "data.dataset", "mnist-sample"),
    ({"model": {"name": "vgg16"}}, "model.name", "resnet18"),
    ({"attacks": [{"name": "dlg2"}]}, "attacks.0.name", "bayes"),
    ({"attacks": [{"name": "l2"}, {"name": "bayes-x"}]}, "attacks.1.name", "l2"),
    ({"defenses": ["gauss:sigma=0.1"]}, "defenses.0", "gaussian"),
    ({"defenses": ["gaussian:sigma=0.1", "prunning"]}, "defenses.1", "prune"),
    # bad options of a known name
    ({"attacks": [{"name": "l2", "overrides": {"lrr": 0.1}}]}, "attacks.0.overrides", "lr"),
    ({"attacks": [{"name": "l2", "overrides": {"lr": -1.0}}]}, "attacks.0.overrides", "positive"),
    ({"defenses": ["gaussian:sigma=-1"]}, "defenses.0", "sigma"),
    ({"defenses": ["gaussian:scale=1"]}, "defenses.0", "sigma"),
    ({"defenses": ["precode", "precode"]}, "defenses", "model-stage"),
    # wrong types
    ({"federation": {"rounds": "three"}}, "federation.rounds", "integer"),
    ({"protocol": {"lr": [0.1]}}, "protocol.lr", "number"),
    ({"defenses": [1]}, "defenses.0", "string"),
    ({"attacks": {"name": "l2"}}, "attacks", "list"),
    ({"audit": {"grids": "yes please"}}, "audit.grids", "boolean"),
    ({"data": {"eval_samples": 1.5}}, "data.eval_samples", "integer"),
    # out of range
    ({"federation": {"round_timeout": 0}}, "federation.round_timeout", "greater than 0"),
    ({"simulation": {"cpus_per_client": 0}}, "simulation.cpus_per_client", "greater than 0"),
    ({"audit": {"budget": {"restarts": 0}}}, "audit.budget.restarts", "greater than"),
    # unknown keys
    ({"federation": {"client": 4}}, "federation.client", "unknown key"),
    ({"attacks": [{"name": "l2", "budget": {"iters": 3}}]}, "attacks.0.budget.iters", "unknown"),
    # contradictory settings
    (
        {
            "federation": {"clients": 4, "secure_aggregation": True},
            "audit": {"clients": {"sample": 2}},
        },
        "audit.clients.sample",
        "secure aggregation",
    ),
    (
        {"federation": {"clients": 2, "clients_per_round": 1, "secure_aggregation": True}},
        "federation.secure_aggregation",
        "2 clients",
    ),
    ({"federation": {"clients": 4}, "protocol": {"batch_size": 501}}, "protocol.batch_size", "500"),
    ({"federation": {"clients": 5, "clients_per_round": 6}}, "federation.clients_per_round", "5"),
    (
        {"federation": {"rounds": 3}, "audit": {"rounds": {"rounds": [2, 4]}}},
        "audit.rounds.rounds",
        "4",
    ),
    (
        {"federation": {"clients": 4, "clients_per_round": 2}, "audit": {"clients": {"sample": 3}}},
        "audit.clients.sample",
        "2",
    ),
    (
        {"protocol": {"kind": "fedsgd", "local_batch_size": 2}},
        "protocol.local_batch_size",
        "fedavg",
    ),
    # paths and names that end up in paths
    ({"name": "../../etc"}, "name", "letters"),
    ({"name": "a/b"}, "name", "letters"),
    ({"name": ""}, "name", "letters"),
    ({"output": ""}, "output", "empty"),
    ({"data": {"root": "data\x00"}}, "data.root", "NUL"),
]


@pytest.mark.parametrize(
    ("raw", "field", "fragment"), MALFORMED, ids=[f"{i}-{c[1]}" for i, c in enumerate(MALFORMED)]
)
def test_refused_at_load_with_the_field_and_accepted_values(
    raw: dict, field: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_scenario(raw, registered_attacks=True)
    message = str(caught.value)
    assert message.startswith(f"scenario: {field}: "), message
    assert fragment in message, message
    assert "\n" not in message


def test_at_least_twenty_cases() -> None:
    assert len(MALFORMED) >= 20


@pytest.mark.parametrize("index", [0, 2, 4, 6, 22, 24, 29])
def test_fedsim_run_exits_2_with_one_line_and_starts_nothing(
    index: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw, field, _ = MALFORMED[index]
    scenario = tmp_path / "bad.toml"
    scenario.write_text(tomli_w.dumps({**raw, "simulation": {"engine": "inprocess"}}))
    out = tmp_path / "run"
    code = cli_main(["run", str(scenario), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"fedsim run: scenario: {field}: ")
    assert not out.exists()


def test_run_needs_a_scenario_or_resume(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli_main(["run"]) == 2
    assert cli_main(["run", "--resume", str(tmp_path / "absent")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "no scenario.toml" in lines[1]
