"""Every scenario file in scenarios/ runs as documented, on a tiny budget set with `--set`.

Federation scenarios (`fedsim run`) keep their data, model, defenses, protocol and
attacks but train 2 rounds with 2 clients per round, audit one client in round 1 and
give every attack 2 iterations. Attack-matrix scenarios (`fedsim attack`, recognised
by their list of attack specs) score 2 images and tune on 1 with 2 iterations; one that
attacks trained states attacks the one after 2 steps (kept in a temporary folder),
and one with the paper's weight sweeps tries one weight and one grid setting.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from fedsim.cli import main as cli_main
from fedsim.records import LEAKAGE_FILE, ROUNDS_FILE, read_jsonl

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((REPO / "scenarios").rglob("*.toml"))


def _is_attack_matrix(raw: dict) -> bool:
    attacks = raw.get("attacks", [])
    return bool(attacks) and all(isinstance(a, str) for a in attacks)


def _federation_overrides(raw: dict) -> list[str]:
    """The tiny budget, set only where it acts (a setting that would do nothing is
    refused): audit settings where there are attacks, and an attack's own iterations where
    it sets them, else the audit's."""
    overrides = [
        "federation.rounds=2",
        "federation.clients_per_round=2",
        "data.eval_samples=50",
        "simulation.engine='inprocess'",
    ]
    attacks = raw.get("attacks", [])
    if not attacks:
        return overrides
    overrides += [
        "audit.rounds={ first = 1 }",
        "audit.clients={ sample = 1 }",
        "audit.worker='inline'",
    ]
    own = [i for i, a in enumerate(attacks) if "iterations" in a.get("budget", {})]
    overrides += [f"attacks.{index}.budget={{ iterations = 2 }}" for index in own]
    if len(own) < len(attacks):
        overrides.append("audit.budget.iterations=2")
    return overrides


TINY_STEPS = [2]


def _matrix_overrides(raw: dict, states: Path) -> list[str]:
    overrides = ["data.images=2", "budget.iterations=2"]
    if "tuning" in raw:
        overrides.append("tuning.images=1")
    sweeps = raw.get("tuning", {}).get("sweep", {})
    for attack, sweep in sweeps.items():
        overrides.append(f"tuning.sweep.{attack}.low={sweep['high']}")
        overrides.append(f"tuning.sweep.{attack}.refine=1")
    if sweeps:
        overrides.append("tuning.samples=1")
    if "training" in raw.get("model", {}):
        overrides += [
            f"model.training.steps={TINY_STEPS}",
            f"model.training.states={str(states)!r}",
        ]
    return overrides


@pytest.fixture(scope="module")
def states_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of trained states for every scenario here (each data set's trained once)."""
    return tmp_path_factory.mktemp("states")


def test_every_scenario_is_found() -> None:
    names = {path.stem for path in SCENARIOS}
    assert {"quickstart", "matrix-mnist", "matrix-cifar10", "soteria-convbig", "precode"} <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_runs_on_a_tiny_budget(
    path: Path, tmp_path: Path, data_root: Path, states_folder: Path
) -> None:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    out = tmp_path / "run"
    if _is_attack_matrix(raw):
        overrides = _matrix_overrides(raw, states_folder)
        command = "attack"
    else:
        overrides = _federation_overrides(raw)
        command = "run"
    args = [command, str(path), "--data-root", str(data_root), "--out", str(out)]
    for override in overrides:
        args += ["--set", override]
    assert cli_main(args) == 0

    if command == "attack":
        results = json.loads((out / "results.json").read_text())
        cells = results["cells"]
        assert len(cells) == len(raw["defenses"]) * len(raw["attacks"])
        assert all(cell["images"] == 2 and len(cell["psnr"]) == 2 for cell in cells)
        if "training" in raw.get("model", {}):
            assert {cell["state"]["step"] for cell in cells} == set(TINY_STEPS)
        return
    rounds = read_jsonl(out / ROUNDS_FILE)
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert all(r["rejected"] == 0 and r["failures"] == 0 for r in rounds), rounds
    labels = {a.get("label") or a["name"] for a in raw.get("attacks", [])}
    if not labels:  # a training run (nothing attacked) keeps the checkpoints audits start from
        assert not (out / LEAKAGE_FILE).exists()
        if raw.get("federation", {}).get("keep_checkpoints"):
            kept = sorted(p.name for p in (out / "checkpoints").glob("round-*.pt"))
            assert kept == ["round-0001.pt", "round-0002.pt"], kept
        return
    leakage = read_jsonl(out / LEAKAGE_FILE)
    # an attack that ran a stand-in is recorded as `name~surrogate` (bayes under Soteria)
    assert {r["attack"].partition("~")[0] for r in leakage} == labels
    assert all(r["round"] == 1 and r["status"] == "ok" for r in leakage), leakage
