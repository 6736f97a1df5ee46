"""`[tuning]` with the paper's breadth: a weight sweep, a sampled grid, and their checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fedsim.attack_matrix.config import load_attack_scenario
from fedsim.cli import main

SWEPT = """
name = "swept"
seed = 0
device = "cpu"
defenses = ["gaussian:sigma=0.1"]
attacks = ["l2", "bayes"]

[data]
dataset = "mnist-sample"
split = "test"
images = 1

[budget]
iterations = 3

[tuning]
split = "train"
images = 2
samples = 3

[tuning.sweep.l2]
names = ["weight_start", "weight_end"]
high = 100.0
low = 1.0
ratio = 10.0
refine = 2

[tuning.space.l2]
weight_end = [1.0, 2.0]
weight_start = [1.0, 0.5]
weight_ramp = [0.5]
parameter_weights = [{}, { "body.0.*" = 1.0, "body.3.*" = 0.3679 }]
priors = [{ tv_squared = 10.0 }]

[tuning.space.bayes]
priors = [{ tv_squared = 1.0 }, { tv_squared = 10.0 }]
"""


pytestmark = pytest.mark.usefixtures("single_thread")


def _scenario(tmp_path: Path, text: str = SWEPT) -> Path:
    path = tmp_path / "swept.toml"
    path.write_text(text)
    return path


def test_sweep_then_sampled_grid_picks_the_best_tuning_psnr(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["attack", str(_scenario(tmp_path)), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["tuning"]["indices"] == [0, 1]  # held out: train, not the scored test
    l2, bayes = results["cells"]
    phases = [t["phase"] for t in l2["trials"]]
    assert phases == ["sweep"] * 2 + ["refine"] * 2 + ["grid"] * 3  # 3 of the 8 settings
    best = max(l2["trials"], key=lambda t: t["psnr"])
    assert {k: l2["tuned"][k] for k in best["params"]} == best["params"]
    swept = [t for t in l2["trials"] if t["phase"] != "grid"]
    assert all(t["params"]["weight_start"] == t["params"]["weight_end"] for t in swept)
    assert [t["phase"] for t in bayes["trials"]] == ["grid", "grid"]  # no sweep: the whole grid
    assert bayes["tuned"] == max(bayes["trials"], key=lambda t: t["psnr"])["params"]
    assert "weight_start, weight_end swept, then" in (out / "table.md").read_text()


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("tuning.sweep.l2.names=['lr2']", "tuning.sweep.l2.names"),
        ("tuning.sweep.l2.names=['parameter_weights']", "tuning.sweep.l2.names"),
        ("tuning.sweep.l2.names=['iterations']", "tuning.sweep.l2.names"),
        ("tuning.sweep.l2.low=1000.0", "tuning.sweep.l2"),
        ("tuning.sweep.l2.ratio=1.0", "tuning.sweep.l2.ratio"),
        ("tuning.sweep.l1={names=['weight_end'], high=1.0, low=0.1}", "tuning.sweep.l1"),
        ("tuning.space.l2.weight_end=['big']", "tuning.space.l2.weight_end"),
        ("tuning.samples=0", "tuning.samples"),
    ],
)
def test_bad_sweeps_name_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, field: str
) -> None:
    code = main(["attack", str(_scenario(tmp_path)), "--set", override])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert field in lines[0], lines[0]


def test_sweep_section_is_resolved_into_the_attacks_sweep(tmp_path: Path) -> None:
    scenario = load_attack_scenario(_scenario(tmp_path))
    sweep = scenario.sweep_for("l2")
    assert sweep.names == ("weight_start", "weight_end") and sweep.values() == [100.0, 10.0]
    assert scenario.sweep_for("bayes") is None


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_trained_state_scenarios_are_the_papers_protocol(dataset: str) -> None:
    paper = Path(__file__).resolve().parents[1] / "scenarios" / "paper"
    narrow = load_attack_scenario(paper / f"trained-{dataset}.toml")
    wide = load_attack_scenario(paper / f"trained-{dataset}-paper-tuning.toml")
    for scenario in (narrow, wide):
        training, data, tuning = scenario.model.training, scenario.data, scenario.tuning
        assert (training.batch_size, training.lr) == (32, 0.001) and 0 in training.steps
        assert (data.split, data.first, data.images, data.labels) == ("train", 10, 100, "known")
        assert (tuning.split, tuning.first, tuning.images) == ("train", 0, 10)  # held out
        assert len(scenario.defenses) == 4 and "none" not in scenario.defenses
    assert narrow.attacks == ["bayes", "l2", "l1", "cos-paper", "cos"]
    assert wide.attacks == ["bayes", "l2", "l1", "cos-paper"]
    grid = {a: math.prod(len(v) for v in wide.space_for(a).values()) for a in wide.attacks}
    assert grid == {"bayes": 540, "l2": 480, "l1": 480, "cos-paper": 480}  # the paper's
    sweeps = {a: len(wide.sweep_for(a).values()) for a in wide.attacks}
    assert sweeps == {"bayes": 24, "l2": 41, "l1": 41, "cos-paper": 41}
