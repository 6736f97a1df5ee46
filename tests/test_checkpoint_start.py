"""Starting a run from a saved global model (`model.checkpoint`): the records from that
round on are the uninterrupted run's, and a state dict of another model is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w
import torch
from run_helpers import StopAfter

from fedsim.cli import main as cli_main
from fedsim.data.registry import get_dataset
from fedsim.errors import ConfigError
from fedsim.models import build_model
from fedsim.records import LEAKAGE_FILE, ROUNDS_FILE
from fedsim.scenario import load_scenario
from fedsim.scenario.loading import validate_scenario

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 4
START = 2
SCENARIO = {
    "name": "from-checkpoint",
    "seed": 3,
    "device": "cpu",
    "defenses": ["gaussian:sigma=0.01"],
    "data": {"dataset": "mnist-sample", "eval_samples": 50},
    "federation": {
        "clients": 4,
        "clients_per_round": 3,
        "rounds": ROUNDS,
        "keep_checkpoints": {"rounds": [START]},
    },
    "protocol": {"kind": "fedavg", "batch_size": 2, "local_batch_size": 1, "local_epochs": 2},
    "attacks": [{"name": "l2"}],
    "audit": {
        "worker": "thread",
        "grids": False,
        "clients": {"sample": 2},
        "budget": {"iterations": 3},
    },
    "simulation": {"engine": "inprocess"},
}


def _lines(run: Path, name: str) -> list[dict]:
    records = [json.loads(line) for line in (run / name).read_text().splitlines()]
    for record in records:
        record.pop("seconds", None)
    return records


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("full")
    scenario = folder / "full.toml"
    scenario.write_text(tomli_w.dumps(SCENARIO))
    out = folder / "run"
    assert cli_main(["run", str(scenario), "--out", str(out)]) == 0
    return out


def test_kept_checkpoints_outlive_the_resume_point(uninterrupted: Path) -> None:
    kept = sorted(p.name for p in (uninterrupted / "checkpoints").glob("round-*.pt"))
    assert kept == [f"round-{START:04d}.pt", f"round-{ROUNDS:04d}.pt"]


def test_a_run_from_a_checkpoint_repeats_the_uninterrupted_run(
    uninterrupted: Path, tmp_path: Path
) -> None:
    checkpoint = uninterrupted / "checkpoints" / f"round-{START:04d}.pt"
    scenario = tmp_path / "later.toml"
    scenario.write_text(tomli_w.dumps(SCENARIO))
    out = tmp_path / "run"
    overrides = [f"model.checkpoint='{checkpoint}'", f"model.checkpoint_round={START}"]
    args = ["run", str(scenario), "--out", str(out)]
    assert cli_main(args + [x for o in overrides for x in ("--set", o)]) == 0

    full_rounds = _lines(uninterrupted, ROUNDS_FILE)
    later_rounds = _lines(out, ROUNDS_FILE)
    # Its first line evaluates the state it starts from: the full run's round-START model.
    assert [r["round"] for r in later_rounds] == list(range(START, ROUNDS + 1))
    start_line = next(r for r in full_rounds if r["round"] == START)
    assert later_rounds[0]["loss"] == start_line["loss"]
    assert later_rounds[0]["accuracy"] == start_line["accuracy"]
    assert later_rounds[1:] == [r for r in full_rounds if r["round"] > START]

    full_leakage = [r for r in _lines(uninterrupted, LEAKAGE_FILE) if r["round"] > START]
    assert full_leakage, "the scenario audits rounds after the checkpoint"
    assert _lines(out, LEAKAGE_FILE) == full_leakage
    header = (out / "scenario.toml").read_text()
    assert "checkpoint_sha256" in header and str(checkpoint.resolve()) in header


def test_a_checkpoint_of_another_architecture_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "mlp.pt"
    torch.save(build_model("mlp", get_dataset("mnist-sample").info).state_dict(), other)
    scenario = tmp_path / "cnn.toml"
    scenario.write_text(tomli_w.dumps(SCENARIO))
    code = cli_main(
        [
            "run",
            str(scenario),
            "--out",
            str(tmp_path / "run"),
            "--set",
            f"model.checkpoint='{other}'",
        ]
    )
    error = capsys.readouterr().err
    assert code == 2
    assert error.count("\n") == 1
    assert "model.checkpoint" in error and "does not fit model 'cnn'" in error
    assert not (tmp_path / "run" / ROUNDS_FILE).exists()


def test_a_checkpoint_of_other_shapes_names_the_parameter(tmp_path: Path) -> None:
    state = build_model("cnn", get_dataset("mnist-sample").info).state_dict()
    state["body.7.weight"] = torch.zeros(100, 10)
    path = tmp_path / "reshaped.pt"
    torch.save(state, path)
    scenario = tmp_path / "s.toml"
    scenario.write_text(tomli_w.dumps(SCENARIO))
    from fedsim.scenario.build import build_federation

    federation = build_federation(load_scenario(scenario, [f"model.checkpoint='{path}'"]))
    with pytest.raises(ConfigError, match=r"body\.7\.weight has shape \(100, 10\)"):
        federation.initial_state()


def test_checkpoint_settings_are_checked_when_loaded(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(tomli_w.dumps(SCENARIO))
    with pytest.raises(ConfigError, match="model.checkpoint_round: set only with a checkpoint"):
        load_scenario(scenario, ["model.checkpoint_round=2"])
    with pytest.raises(ConfigError, match="federation.rounds: 4 is not past"):
        load_scenario(scenario, ["model.checkpoint='x.pt'", "model.checkpoint_round=4"])
    with pytest.raises(ConfigError, match="audit.rounds.rounds: round 1 comes before"):
        load_scenario(
            scenario,
            ["model.checkpoint='x.pt'", "model.checkpoint_round=2", "audit.rounds.rounds=[1, 4]"],
        )


def test_a_run_from_a_checkpoint_resumes_like_any_run(uninterrupted: Path, tmp_path: Path) -> None:
    from fedsim.flower.apps.client_app import simulation_app as client_app
    from fedsim.flower.apps.server_app import run_federation
    from fedsim.flower.runtimes.local_grid import LocalGrid
    from fedsim.records import RunRecorder, run_header
    from fedsim.scenario import scenario_to_toml

    checkpoint = uninterrupted / "checkpoints" / f"round-{START:04d}.pt"
    path = tmp_path / "later.toml"
    path.write_text(tomli_w.dumps(SCENARIO))
    scenario = load_scenario(
        path, [f"model.checkpoint='{checkpoint}'", f"model.checkpoint_round={START}"]
    )
    out = tmp_path / "run"
    recorder = RunRecorder(out)
    recorder.write_scenario(scenario_to_toml(scenario, run_header(scenario.seed)))
    grid = LocalGrid(client_app, scenario.federation.clients, seed=scenario.seed)
    with pytest.raises(KeyboardInterrupt):
        run_federation(grid, scenario, recorder, StopAfter(START + 1), torch_threads=0)
    assert cli_main(["run", "--resume", str(out)]) == 0
    assert _lines(out, ROUNDS_FILE)[1:] == [
        r for r in _lines(uninterrupted, ROUNDS_FILE) if r["round"] > START
    ]
    assert _lines(out, LEAKAGE_FILE) == [
        r for r in _lines(uninterrupted, LEAKAGE_FILE) if r["round"] > START
    ]


def test_progress_of_a_run_from_a_checkpoint_starts_at_its_round(tmp_path: Path) -> None:
    """The live lines begin with the state the run starts from, and count its images."""
    from rich.console import Console

    from fedsim.flower.bookkeeping.progress import RunProgress, expected_attack_runs, round_line

    path = tmp_path / "s.toml"
    path.write_text(tomli_w.dumps(SCENARIO))
    scenario = load_scenario(path, ["model.checkpoint='x.pt'", "model.checkpoint_round=2"])
    assert expected_attack_runs(scenario) == 2 * 2  # rounds 3 and 4, two sampled clients
    console = Console(record=True, width=200)
    with RunProgress(scenario, console) as progress:
        for rnd in (2, 3):
            progress.round_finished({"round": rnd, "loss": 1.0, "accuracy": 0.5, "audited": False})
    printed = console.export_text()
    assert "round   2" in printed and "round   3" in printed
    line = round_line(
        {"round": 3, "loss": 1.0, "accuracy": 0.5},
        [{"round": 3, "attack": "l2", "status": "ok", "psnr": 20.0, "ssim_images": [0.9, 0.1]}],
    )
    assert line.endswith("l2 20.0 dB 1/2 recovered")


def test_a_dpsgd_run_from_a_checkpoint_records_no_epsilon(
    uninterrupted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ε counts every step a client ever took; a run from a checkpoint does not know them."""
    checkpoint = uninterrupted / "checkpoints" / f"round-{START:04d}.pt"
    scenario = tmp_path / "dp.toml"
    # no attacks, so no audit settings (they would do nothing)
    scenario.write_text(tomli_w.dumps({**SCENARIO, "attacks": [], "audit": {}}))
    out = tmp_path / "run"
    settings = [
        "defenses=['dpsgd:clip=1,sigma=1,delta=1e-5']",
        f"model.checkpoint='{checkpoint}'",
        f"model.checkpoint_round={START}",
    ]
    args = ["run", str(scenario), "--out", str(out)]
    assert cli_main(args + [x for s in settings for x in ("--set", s)]) == 0
    assert all(
        "epsilon" not in record and "privacy" not in record for record in _lines(out, ROUNDS_FILE)
    )
    assert "no ε is recorded for a run started from a checkpoint" in capsys.readouterr().out


def test_audit_checkpoints_trains_only_the_audited_clients_one_round_after_each_state(
    uninterrupted: Path, tmp_path: Path
) -> None:
    """scripts/audit_checkpoints.py: per state, one more round from that state's model in
    which only the audited clients train, one local epoch over their batch in one
    mini-batch; scripts/whole_run_table.py reads the folder back."""
    out = tmp_path / "audits"
    script = REPO / "scripts" / "audit_checkpoints.py"
    attacks = "[{name = 'l2', budget = {iterations = 2}}]"
    command = [sys.executable, str(script), str(uninterrupted), str(out), "--batch-size", "1"]
    command += ["--clients", "2", "--states", "0", str(START), "--attacks", attacks]
    printed = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    assert "| 0 |" in printed and f"| {START} |" in printed
    run = out / f"state-{START:04d}"
    raw = tomllib.loads((run / "scenario.toml").read_text())
    scenario = validate_scenario({k: v for k, v in raw.items() if k != "run"})
    assert scenario.model.checkpoint_round == START and scenario.model.checkpoint is not None
    assert scenario.federation.rounds == START + 1
    assert (scenario.protocol.batch_size, scenario.protocol.local_steps) == (1, 1)
    audited = _lines(run, ROUNDS_FILE)[-1]
    assert audited["round"] == START + 1 and len(audited["clients"]) == 2
    leakage = _lines(run, LEAKAGE_FILE)
    assert sorted(r["client"] for r in leakage) == sorted(audited["clients"])
    assert all(len(r["ssim_images"]) == 1 for r in leakage)
    table = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "whole_run_table.py"), str(out)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "B = 1, l2" in table and "test accuracy" in table
