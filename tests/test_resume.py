"""Crash safety: killed runs keep every finished line; `fedsim run --resume` finishes them
with the records an uninterrupted run writes (all numbers equal, timings aside) — also
under a server strategy with state between rounds (FedAdam's moments, checkpointed
with the model) and under secure aggregation (SecAgg+).

Kill points: an interruption raised in process right after round 2's record, SIGKILL
and SIGINT to a `fedsim run` subprocess while round 3's clients train (held there by
the `FEDSIM_FAULTS` sleep switch, which changes no numbers), and SIGKILL as soon as
round 1's line appears (wherever the worker thread's attacks then are).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w
import torch
from run_helpers import StopAfter

from fedsim.cli import main as cli_main
from fedsim.flower.apps.client_app import simulation_app as client_app
from fedsim.flower.apps.server_app import run_federation
from fedsim.flower.runtimes.faults import FAULTS_ENV
from fedsim.flower.runtimes.local_grid import LocalGrid
from fedsim.records import LEAKAGE_FILE, ROUNDS_FILE, RunRecorder, read_jsonl, run_header
from fedsim.report import load_run
from fedsim.scenario import load_scenario, scenario_to_toml

ROUNDS = 4
SCENARIO = {
    "name": "resume",
    "seed": 1,
    "device": "cpu",
    "defenses": ["gaussian:sigma=0.01"],
    "data": {"dataset": "mnist-sample", "eval_samples": 50},
    "federation": {"clients": 3, "rounds": ROUNDS},
    "protocol": {"kind": "fedsgd", "batch_size": 1},
    "attacks": [{"name": "l2"}],
    "audit": {"worker": "thread", "grids": False, "budget": {"iterations": 3}},
    "simulation": {"engine": "inprocess"},
}


def numbers(run_dir: Path, name: str) -> list[dict]:
    """Every line of a record file, parsed, without its wall-clock seconds."""
    records = []
    for line in (run_dir / name).read_text().splitlines():
        record = json.loads(line)
        record.pop("seconds", None)
        records.append(record)
    return records


def assert_every_line_readable(run_dir: Path) -> None:
    for name in (ROUNDS_FILE, LEAKAGE_FILE):
        path = run_dir / name
        if path.exists():
            text = path.read_text()
            assert not text or text.endswith("\n"), f"{name}: torn last line"
            for line in text.splitlines():
                json.loads(line)


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "resume.toml"
    path.write_text(tomli_w.dumps(SCENARIO))
    return path


@pytest.fixture(scope="module")
def reference(scenario_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    assert cli_main(["run", str(scenario_file), "--out", str(out)]) == 0
    return out


def assert_same_as(reference: Path, resumed: Path) -> None:
    for name in (ROUNDS_FILE, LEAKAGE_FILE):
        assert numbers(resumed, name) == numbers(reference, name), name


def test_interrupted_in_process_then_resumed(
    scenario_file: Path, reference: Path, tmp_path: Path
) -> None:
    scenario = load_scenario(scenario_file)
    out = tmp_path / "run"
    recorder = RunRecorder(out)
    recorder.write_scenario(scenario_to_toml(scenario, run_header(scenario.seed)))
    grid = LocalGrid(client_app, scenario.federation.clients, seed=scenario.seed)
    with pytest.raises(KeyboardInterrupt):
        run_federation(grid, scenario, recorder, StopAfter(2), torch_threads=0)
    assert_every_line_readable(out)
    partial = load_run(out)
    assert partial.partial and partial.finished_rounds == 2
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == ["round-0002.pt"]

    assert cli_main(["run", "--resume", str(out)]) == 0
    assert_same_as(reference, out)
    assert not load_run(out).partial
    assert cli_main(["run", "--resume", str(out)]) == 0  # complete: nothing to do


def test_resume_refuses_settings_that_change_results(
    reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["run", "--resume", str(reference), "--set", "protocol.lr=0.5"]) == 2
    assert "a resumed run keeps its scenario" in capsys.readouterr().err


def interrupted_after(scenario_file: Path, out: Path, last: int) -> None:
    """Run the scenario in process and interrupt it once round `last` is recorded."""
    scenario = load_scenario(scenario_file)
    recorder = RunRecorder(out)
    recorder.write_scenario(scenario_to_toml(scenario, run_header(scenario.seed)))
    grid = LocalGrid(client_app, scenario.federation.clients, seed=scenario.seed)
    with pytest.raises(KeyboardInterrupt):
        run_federation(grid, scenario, recorder, StopAfter(last), torch_threads=0)
    assert load_run(out).finished_rounds == last


def variant(tmp_path: Path, name: str, **changes: dict) -> tuple[Path, Path]:
    """A scenario file of SCENARIO with `changes` merged into its tables, and its full run."""
    raw = {**SCENARIO, "name": name}
    for table, values in changes.items():
        raw[table] = {**SCENARIO.get(table, {}), **values}
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(raw))
    out = tmp_path / f"{name}-reference"
    assert cli_main(["run", str(path), "--out", str(out)]) == 0
    return path, out


def test_fedadam_resumes_from_its_checkpointed_moments(
    tmp_path: Path, reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fedadam = {"strategy": {"name": "fedadam", "eta": 0.01}}
    scenario_file, full = variant(tmp_path, "fedadam", federation=fedadam)
    assert numbers(full, ROUNDS_FILE) != numbers(reference, ROUNDS_FILE)  # not FedAvg's

    out = tmp_path / "run"
    interrupted_after(scenario_file, out, 2)
    kept = sorted(p.name for p in (out / "checkpoints").glob("*.pt"))
    assert kept == ["round-0002.pt", "strategy-0002.pt"]
    moments = torch.load(out / "checkpoints" / "strategy-0002.pt", weights_only=True)
    assert {name.split("/")[0] for name in moments} == {"m_t", "v_t"}
    assert sum(float(t.abs().sum()) for t in moments.values()) > 0

    shutil.copytree(out, tmp_path / "without-moments")
    assert cli_main(["run", "--resume", str(out)]) == 0
    assert_same_as(full, out)

    # The moments matter: resumed without them, the run is refused, not silently changed.
    (tmp_path / "without-moments" / "checkpoints" / "strategy-0002.pt").unlink()
    capsys.readouterr()
    assert cli_main(["run", "--resume", str(tmp_path / "without-moments")]) == 2
    assert "strategy-0002.pt is missing" in capsys.readouterr().err


def test_secure_aggregation_resumes_with_the_records_of_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    scenario_file, full = variant(tmp_path, "secagg", federation={"secure_aggregation": True})
    leakage = read_jsonl(full / LEAKAGE_FILE)
    hidden = [r for r in leakage if "aggregate_of" not in r]
    assert {r["status"] for r in hidden} == {"impossible"} and len(hidden) == ROUNDS
    assert len(leakage) == 2 * ROUNDS  # and the sum the server saw, attacked each round

    out = tmp_path / "run"
    interrupted_after(scenario_file, out, 2)
    assert cli_main(["run", "--resume", str(out)]) == 0
    assert_same_as(full, out)


def _start(scenario_file: Path, out: Path, faults: str | None) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop(FAULTS_ENV, None)
    if faults:
        env[FAULTS_ENV] = faults
    command = [sys.executable, "-m", "fedsim.cli", "run", str(scenario_file), "--out", str(out)]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _wait_for_round(out: Path, server_round: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        path = out / ROUNDS_FILE
        if path.exists() and f'"round": {server_round},' in path.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"round {server_round} never recorded")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill", "wait_round", "faults"),
    [
        (signal.SIGKILL, 2, f"{ROUNDS - 1}:*:sleep=60"),
        (signal.SIGINT, 2, f"{ROUNDS - 1}:*:sleep=60"),
        (signal.SIGKILL, 1, None),
    ],
    ids=["sigkill-in-round-3", "sigint-in-round-3", "sigkill-after-round-1"],
)
def test_killed_subprocess_then_resumed(
    kill: signal.Signals,
    wait_round: int,
    faults: str | None,
    scenario_file: Path,
    reference: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    process = _start(scenario_file, out, faults)
    try:
        _wait_for_round(out, wait_round, process)
        if faults:
            time.sleep(0.5)  # inside the sleeping clients of the next round
        process.send_signal(kill)
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if kill == signal.SIGINT:
        assert code == 130 and "interrupted" in process.stderr.read()
    else:
        assert code == -signal.SIGKILL
    assert_every_line_readable(out)
    run = load_run(out)
    assert run.partial and run.finished_rounds >= wait_round

    assert cli_main(["run", "--resume", str(out)]) == 0
    assert_same_as(reference, out)
