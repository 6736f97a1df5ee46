"""States of the paper's CNN trained under a defense, kept on disk, and attacked by `fedsim attack`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import defenses.client
from fedsim.attack_matrix.trained_states import Recipe, train_states
from fedsim.data import load_dataset
from fedsim.models import build_model

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def splits():
    return {s: load_dataset("mnist-sample", s) for s in ("train", "test")}


def _recipe(splits, defense: str = "gaussian:sigma=0.1", lr: float = 0.001) -> Recipe:
    return Recipe("mnist-sample", len(splits["train"]), "cnn", defense, 0, 8, lr)


def _train(splits, recipe: Recipe, cache: Path, steps=(0, 2, 3)):
    return train_states(recipe, steps, splits["train"], splits["test"], cache, torch.device("cpu"))


def _tensors(state) -> dict[str, torch.Tensor]:
    return torch.load(state.path, weights_only=True)


def test_states_are_kept_at_each_step_from_the_seeded_start(splits, tmp_path: Path) -> None:
    recipe = _recipe(splits)
    states = _train(splits, recipe, tmp_path)
    assert sorted(states) == [0, 2, 3]
    torch.manual_seed(0)
    start = build_model("cnn", splits["train"].info).state_dict()
    assert all(torch.equal(start[k], v) for k, v in _tensors(states[0]).items())
    assert not torch.equal(_tensors(states[2])["body.0.weight"], start["body.0.weight"])
    assert not torch.equal(
        _tensors(states[2])["body.0.weight"], _tensors(states[3])["body.0.weight"]
    )
    record = json.loads((recipe.folder(tmp_path) / "recipe.json").read_text())
    assert record["defense"] == "gaussian:sigma=0.1" and record["batch_size"] == 8
    assert set(record["states"]) == {"0", "2", "3"}
    assert all(0.0 <= a <= 1.0 for a in record["states"].values())


def test_training_is_deterministic_and_the_cache_is_read_back(
    splits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = _recipe(splits)
    first = _train(splits, recipe, tmp_path / "a")
    again = _train(splits, recipe, tmp_path / "b")
    assert all(torch.equal(v, _tensors(again[3])[k]) for k, v in _tensors(first[3]).items())

    def no_training(*args, **kwargs):
        raise AssertionError("a cached state was trained again")

    monkeypatch.setattr(defenses.client, "client_update", no_training)
    cached = _train(splits, recipe, tmp_path / "a", steps=(3, 0))
    assert cached[3].path == first[3].path and cached[3].test_accuracy == first[3].test_accuracy
    with pytest.raises(AssertionError, match="trained again"):
        _train(splits, recipe, tmp_path / "a", steps=(4,))  # a state not kept yet


def test_the_defense_acts_in_training_and_names_the_folder(splits, tmp_path: Path) -> None:
    noisy = _recipe(splits, "gaussian:sigma=1.0")
    plain = _recipe(splits, "none")
    assert (
        noisy.folder(tmp_path)
        != plain.folder(tmp_path)
        != _recipe(splits, lr=0.01).folder(tmp_path)
    )
    a = _tensors(_train(splits, noisy, tmp_path, steps=(2,))[2])
    b = _tensors(_train(splits, plain, tmp_path, steps=(2,))[2])
    assert not torch.equal(a["body.9.weight"], b["body.9.weight"])


REPO = Path(__file__).resolve().parents[1]


def test_the_trained_state_scenarios_quick_check_runs_from_a_fresh_clone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_root: Path
) -> None:
    """The quick check its header gives, with no state trained yet: it trains them."""
    from fedsim.attack_matrix.config import load_attack_scenario
    from fedsim.cli import main

    path = REPO / "scenarios" / "paper" / "trained-mnist.toml"
    scenario = load_attack_scenario(path)
    monkeypatch.chdir(tmp_path)  # its states folder, runs/states, is relative: a fresh one
    quick = ["data.images=1", "tuning.images=1", "budget.iterations=2"]
    args = ["attack", str(path), "--data-root", str(data_root), "--out", "run"]
    assert main(args + [arg for q in quick for arg in ("--set", q)]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    steps = scenario.model.training.steps
    cells = results["cells"]
    assert len(cells) == len(scenario.defenses) * len(steps) * len(scenario.attacks)
    assert results["data"]["split"] == "train" and results["data"]["indices"] == [10]
    assert results["data"]["tuning"]["indices"] == [0]
    by_state = {(c["defense"], c["state"]["step"]): c["state"] for c in cells}
    assert len(by_state) == len(scenario.defenses) * len(steps)
    for (_, step), state in by_state.items():
        assert Path(state["path"]).is_file() and f"step-{step:06d}" in state["path"]
        assert 0.0 <= state["test_accuracy"] <= 1.0
    trained = [s for (_, step), s in by_state.items() if step == max(steps)]
    assert all(s["test_accuracy"] > 0.3 for s in trained)  # the network learnt under each defense
    assert all(len(c["psnr_unclipped"]) == 1 for c in cells)
    table = (tmp_path / "run" / "table.md").read_text()
    assert f"| step {max(steps)}: gaussian:sigma=0.1 |" in table
    assert len(list((tmp_path / "runs" / "states").glob("*/recipe.json"))) == len(scenario.defenses)
