"""Defenses inside the federation: adapted attacks, ε per round, scores on what was trained on."""

from __future__ import annotations

from pathlib import Path

import pytest

from defenses.accounting import RoundSchedule, privacy_claims
from fedsim.cli import main as cli_main
from fedsim.errors import ConfigError
from fedsim.records import LEAKAGE_FILE, ROUNDS_FILE, read_jsonl
from fedsim.scenario.build import SEEDED_NOISE, build_federation
from fedsim.scenario.loading import load_scenario

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "scenarios" / "quickstart.toml"
SMALL = [
    "simulation.engine='inprocess'",
    "federation.rounds=2",
    "federation.clients=2",
    "audit.clients={}",
    "audit.budget.iterations=3",
    "audit.budget.seconds=60",
    "audit.worker='inline'",
    "data.eval_samples=50",
]


NO_ATTACKS = ("attacks=[]", "audit={}")
"""No attacks, and so none of the audit settings (they would do nothing, and are refused)."""


def _run(tmp_path: Path, *overrides: str) -> Path:
    out = tmp_path / "run"
    settings = [*SMALL, *overrides]
    code = cli_main(
        ["run", str(QUICKSTART), *[a for s in settings for a in ("--set", s)], "--out", str(out)]
    )
    assert code == 0
    return out


def test_adapted_attack_runs_in_the_federation(tmp_path: Path) -> None:
    out = _run(tmp_path, "defenses=['soteria:rate=80']", "attacks=[{name = 'adapted'}]")
    leakage = read_jsonl(out / LEAKAGE_FILE)
    assert len(leakage) == 2 * 2
    assert {r["attack"] for r in leakage} == {"adapted"}
    assert all(r["status"] == "ok" and r["psnr"] is not None for r in leakage)


def test_adapted_attack_is_the_one_for_the_defense() -> None:
    from fedsim.auditor.attack_runner import AttackRunner
    from fedsim.auditor.setup import AuditSetup

    for defense, expected in [
        ("soteria:rate=80", "CosineAttack"),
        ("gaussian:sigma=0.1", "BayesAttack"),
    ]:
        scenario = load_scenario(
            QUICKSTART,
            [f"defenses=['{defense}']", "attacks=[{name = 'adapted', overrides = {lr = 0.05}}]"],
        )
        runner = AttackRunner(AuditSetup.from_federation(build_federation(scenario)), device=None)  # type: ignore[arg-type]
        ((_, attack),) = runner.attacks
        assert type(attack).__name__ == expected and attack.lr == 0.05
        if defense.startswith("soteria"):
            assert attack.exclude and all(name.endswith(".weight") for name in attack.exclude)


def test_a_misspelt_attack_is_refused_and_adapted_named() -> None:
    with pytest.raises(ConfigError, match=r"attacks\.0\.name: .*adapted"):
        load_scenario(QUICKSTART, ["attacks=[{name = 'adaptd'}]"])


def test_dpsgd_runs_record_epsilon_per_threat_model_each_round(tmp_path: Path) -> None:
    out = _run(
        tmp_path,
        "defenses=['dpsgd:clip=1,sigma=1.0,delta=1e-5']",
        "attacks=[{name = 'bayes'}]",
        "federation.rounds=3",
    )
    rounds = read_jsonl(out / ROUNDS_FILE)
    scenario = load_scenario(QUICKSTART, [*SMALL, "defenses=['dpsgd']"])
    federation = build_federation(scenario)
    protocol = scenario.protocol  # the quickstart trains local epochs: several local steps
    schedule = RoundSchedule(
        min(len(p) for p in federation.partitions),
        protocol.batch_size,
        protocol.local_steps,
        protocol.local_batch_size,
    )
    assert schedule.local_steps > 1
    for record in rounds:
        assert "epsilon" not in record  # never a bare ε
        expected = privacy_claims(1.0, 1e-5, schedule, record["round"], secret_sampling=False)
        claims = {c["threat_model"]: c for c in record["privacy"]}
        assert list(claims) == ["subsampled", "informed", "user"]
        for claim in expected:
            assert claims[claim.threat_model]["epsilon"] == claim.epsilon
            assert claims[claim.threat_model]["delta"] == 1e-5
        assert not claims["subsampled"]["holds"] and "public" in claims["subsampled"]["why_not"]
        # Simulated clients draw their noise from the scenario seed the run directory holds:
        # the claims hold against the simulated server, which never has it, and say so.
        for name in ("informed", "user"):
            assert claims[name]["holds"] and claims[name]["caveat"] == SEEDED_NOISE
        assert claims["informed"]["reconstruction_bound"]["kappa"] is not None
    first, last = rounds[1]["privacy"][1]["epsilon"], rounds[3]["privacy"][1]["epsilon"]
    assert rounds[0]["privacy"][1]["epsilon"] == 0.0 < first < last


def test_rounds_without_dpsgd_carry_no_epsilon(tmp_path: Path) -> None:
    rounds = read_jsonl(_run(tmp_path, *NO_ATTACKS) / ROUNDS_FILE)
    assert all("epsilon" not in r and "privacy" not in r for r in rounds)


def test_dpsgd_under_fedavg_local_steps_refuses_bayes_and_says_why(tmp_path: Path) -> None:
    out = _run(
        tmp_path,
        "defenses=['dpsgd:clip=1,sigma=0.5']",
        "attacks=[{name = 'bayes'}, {name = 'l2'}]",
        "protocol.kind='fedavg'",
        "protocol.batch_size=2",
        "protocol.local_batch_size=1",  # one local epoch of 2 steps
        "protocol.local_epochs=1",
        "federation.rounds=1",
    )
    leakage = read_jsonl(out / LEAKAGE_FILE)
    bayes = [r for r in leakage if r["attack"] == "bayes"]
    assert bayes and all(r["status"] == "refused" for r in bayes)
    assert all("refused: dpsgd under fedavg with 2 local steps" in r["message"] for r in bayes)
    assert all(r["status"] == "ok" for r in leakage if r["attack"] == "l2")


def test_the_run_says_how_much_data_it_used(tmp_path: Path) -> None:
    import tomllib

    from fedsim.records import SCENARIO_FILE

    out = _run(tmp_path, *NO_ATTACKS, "federation.rounds=1")
    header = tomllib.loads((out / SCENARIO_FILE).read_text())["run"]
    assert header["data"] == {"train_size": 2000, "test_size": 500}  # the packaged mnist-sample


def test_ats_reconstructions_are_also_scored_against_the_transformed_batch(tmp_path: Path) -> None:
    out = _run(tmp_path, "defenses=['ats:policy=21-13-3']", "attacks=[{name = 'l2'}]")
    leakage = read_jsonl(out / LEAKAGE_FILE)
    assert leakage and all(r["psnr_trained_on"] is not None for r in leakage)
    # The crop, flip and policy move the image: the two scores differ.
    assert any(abs(r["psnr_trained_on"] - r["psnr"]) > 1e-3 for r in leakage)
    plain = read_jsonl(_run(tmp_path / "plain", "attacks=[{name = 'l2'}]") / LEAKAGE_FILE)
    assert all("psnr_trained_on" not in r for r in plain)


def test_trained_batch_is_what_the_client_trained_on() -> None:
    import torch

    from defenses.client import client_update

    scenario = load_scenario(QUICKSTART, [*SMALL, "defenses=['ats:policy=hybrid']"])
    federation = build_federation(scenario)
    x, y = federation.client_batch(1, 2)
    made = client_update(
        federation.defense, federation.build_model(), x, y, federation.defense_generator(1, 2)
    )
    seen, labels = federation.trained_batch(1, 2)
    assert torch.equal(seen, made.inputs) and torch.equal(labels, made.labels)
    assert not torch.equal(seen, x)


def test_batch_norm_buffers_keep_their_dtype_across_rounds(tmp_path: Path) -> None:
    """FedAvg averages num_batches_tracked as a float; round 2 must still accept replies."""
    out = _run(tmp_path, "model.name='convnet64'", *NO_ATTACKS)
    rounds = read_jsonl(out / ROUNDS_FILE)
    assert [r["rejected"] for r in rounds] == [0, 0, 0]
    assert len({r["loss"] for r in rounds}) == 3  # every round moved the model


def test_aggregate_goes_back_to_the_dtypes_sent() -> None:
    import torch
    from flwr.app import ArrayRecord

    from fedsim.strategies.reply_check import array_specs
    from fedsim.strategies.reply_filter import as_sent

    sent = {"w": torch.ones(2), "n": torch.tensor(3, dtype=torch.int64)}
    averaged = ArrayRecord(
        torch_state_dict={"w": torch.full((2,), 0.5), "n": torch.tensor(3.6, dtype=torch.float64)}
    )
    state = as_sent(averaged, array_specs(sent)).to_torch_state_dict()
    assert state["n"].dtype == torch.int64 and int(state["n"]) == 4
    assert state["w"].dtype == torch.float32 and torch.equal(state["w"], torch.full((2,), 0.5))


def test_attack_overrides_may_set_priors_and_a_bad_prior_names_the_field() -> None:
    """A federation gives its attacks the prior weights the matrix tuned (EXPERIMENTS.md §3)."""
    from fedsim.scenario.components import build_attack

    scenario = load_scenario(
        QUICKSTART, ["attacks=[{name = 'bayes', overrides = {priors = {tv = 30.0}}}]"]
    )
    assert build_attack("bayes", dict(scenario.attacks[0].overrides), 0).priors == {"tv": 30.0}
    with pytest.raises(ConfigError, match=r"attacks\.0\.overrides: .*prior: unknown name 'tvv'"):
        load_scenario(
            QUICKSTART, ["attacks=[{name = 'bayes', overrides = {priors = {tvv = 1.0}}}]"]
        )
