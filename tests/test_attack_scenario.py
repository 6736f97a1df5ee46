"""`fedsim attack SCENARIO`: a matrix from a file, each attack tuned on held-out images."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from fedsim.attack_matrix.config import load_attack_scenario
from fedsim.attack_matrix.runner import run_directory
from fedsim.cli import main
from fedsim.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

TINY = """
name = "tiny"
seed = 0
device = "cpu"
defenses = ["none", "gaussian:sigma=0.1"]
attacks = ["bayes", "l2:optimizer='adam'"]

[data]
dataset = "mnist-sample"
split = "test"
first = 0
images = 2

[budget]
iterations = 3

[tuning]
split = "train"
first = 0
images = 1

[tuning.space.bayes]
priors = [{tv = 100.0}, {tv = 1000.0}]
"""

SPACE = [{"tv": 100.0}, {"tv": 1000.0}]


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Tiny attacks: one thread is fastest, above all on a machine busy with other work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _single_threaded() -> Iterator[None]:
    with _one_thread():
        yield


def _scenario(tmp_path: Path, text: str = TINY, name: str = "tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["attack", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The tiny scenario run once for the tests that read its directory: (run dir, stdout, stderr)."""
    folder = tmp_path_factory.mktemp("tiny")
    run_dir = folder / "run"
    out, err = io.StringIO(), io.StringIO()
    with _one_thread(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["attack", str(_scenario(folder)), "--out", str(run_dir)])
    assert code == 0, err.getvalue()
    return run_dir, out.getvalue(), err.getvalue()


def test_tiny_scenario_writes_the_run_directory(tiny_run: tuple[Path, str, str]) -> None:
    run_dir, out, err = tiny_run
    for name in ("scenario.toml", "results.json", "table.md", "grid.png"):
        assert (run_dir / name).stat().st_size > 0, name
    assert "PSNR" in out  # the flag mode's terminal table
    assert "[4/4]" in err  # one progress line per cell

    results = json.loads((run_dir / "results.json").read_text())
    assert results["scenario"] == "tiny" and results["complete"] is True
    data = results["data"]
    assert (data["train_size"], data["test_size"]) == (2000, 500)  # mnist-sample's splits
    scored = {(data["split"], i) for i in data["indices"]}
    held_out = {(data["tuning"]["split"], i) for i in data["tuning"]["indices"]}
    assert len(scored) == 2 and len(held_out) == 1 and not scored & held_out
    for key in ("platform", "python", "torch", "cpu_count", "threads", "device"):
        assert key in results["machine"]
    assert results["seconds"] > 0 and results["machine"]["threads"] == 1

    cells = {(c["defense"], c["requested"]): c for c in results["cells"]}
    assert len(cells) == 4
    for defense in ("none", "gaussian:sigma=0.1"):
        bayes = cells[(defense, "bayes")]
        assert bayes["tuned"]["priors"] in SPACE
        assert [t["params"]["priors"] for t in bayes["trials"]] == SPACE
        assert all(isinstance(t["psnr"], float) for t in bayes["trials"])
        assert len(bayes["psnr"]) == 2 and bayes["budget"]["iterations"] == 3
        l2 = cells[(defense, "l2:optimizer='adam'")]
        assert l2["tuned"] is None and l2["trials"] == []

    table = (run_dir / "table.md").read_text()
    assert "| defense | bayes | l2:optimizer='adam' |" in table
    assert table.count("**") >= 4  # a best cell per row in both tables
    assert "mnist-sample" in table and "2 per cell" in table

    resolved = load_attack_scenario(run_dir / "scenario.toml")
    assert resolved.budget.iterations == 3 and resolved.data.labels == "known"
    assert resolved.tuning is not None and resolved.tuning.space["bayes"]["priors"] == SPACE


def test_same_seed_gives_the_same_scores(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_run: tuple[Path, str, str]
) -> None:
    code, _, err = _run(
        capsys, str(_scenario(tmp_path)), "--set", f"output={json.dumps(str(tmp_path))}"
    )
    assert code == 0, err
    (again,) = tmp_path.glob("tiny-*")  # <output>/<name>-<time>
    scores = [
        [(c["psnr"], c["tuned"]) for c in json.loads((r / "results.json").read_text())["cells"]]
        for r in (tiny_run[0], again)
    ]
    assert scores[0] == scores[1]


def test_run_directories_do_not_clash(tmp_path: Path) -> None:
    scenario = load_attack_scenario(
        _scenario(tmp_path), [f"output={json.dumps(str(tmp_path / 'runs'))}"]
    )
    started = dt.datetime(2025, 1, 2, 3, 4, 5)
    first = run_directory(scenario, None, started)
    (first / "results.json").write_text("{}")
    second = run_directory(scenario, None, started)
    assert (first.name, second.name) == ("tiny-20250102-030405", "tiny-20250102-030405-1")
    with pytest.raises(ConfigError, match="--out"):
        run_directory(scenario, first, started)  # --out names a directory holding a run


def test_data_root_on_the_command_line_replaces_the_files(
    capsys: pytest.CaptureFixture[str], data_root: Path, tmp_path: Path
) -> None:
    text = TINY.replace('dataset = "mnist-sample"', 'dataset = "mnist"\nroot = "no-such-root"')
    text = text.replace('defenses = ["none", "gaussian:sigma=0.1"]', 'defenses = ["none"]')
    text = text.replace('attacks = ["bayes", "l2:optimizer=\'adam\'"]', 'attacks = ["bayes"]')
    code, _, err = _run(
        capsys, str(_scenario(tmp_path, text)), "--data-root", str(data_root),
        "--set", "data.images=1", "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert code == 0, err
    data = json.loads((tmp_path / "run" / "results.json").read_text())["data"]
    assert (data["dataset"], data["train_size"], data["test_size"]) == ("mnist", 60_000, 10_000)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("tuning.split='test'", "tuning.first"),  # test images 0-1 scored, 0 for tuning
        ("data.colour=true", "data.colour"),
        ("tuning.space.cos.priors=[{tv=0.1}]", "tuning.space.cos"),
        ("tuning.space.bayes.priorz=[{tv=0.1}]", "tuning.space.bayes.priorz"),
        ("tuning.space.bayes.iterations=[5, 10]", "tuning.space.bayes.iterations"),
        ("defenses=['none', 'gaussian:sigma=-1']", "defenses.1"),
        ("attacks=['bayes', 'nosuch']", "attacks.1"),
        ("data.images=0", "data.images"),
    ],
)
def test_bad_scenarios_print_one_line_naming_the_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, change: str, named: str
) -> None:
    run_dir = tmp_path / "run"
    code, _, err = _run(capsys, str(_scenario(tmp_path)), "--set", change, "--out", str(run_dir))
    assert code == 2
    line = _one_error_line(err)
    assert f": {named}:" in line, line
    assert not run_dir.exists()  # refused before anything is written


def test_overlapping_tuning_images_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    overlap = ["--set", "tuning.split='test'", "--set", "tuning.first=1"]
    code, _, err = _run(capsys, str(_scenario(tmp_path)), *overlap)
    assert code == 2
    assert "tuning.first" in _one_error_line(err) and "overlap" in err
    # The same split is fine where the ranges are apart (scored: test images 0 and 1).
    apart = load_attack_scenario(_scenario(tmp_path), ["tuning.split='test'", "tuning.first=2"])
    assert apart.tuning is not None and apart.tuning.first == 2


def test_too_few_tuning_images_name_the_setting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = _run(capsys, str(_scenario(tmp_path)), "--set", "tuning.first=1999",
                        "--set", "tuning.images=2")  # fmt: skip
    assert code == 2
    assert _one_error_line(err).startswith("fedsim attack: tuning.images:")


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--images", "3"], "--images"),
        (["--attack", "l2"], "--attack"),
        (["--seed", "1"], "--seed"),
        (["--json", "out.json"], "--json"),
    ],
)
def test_flag_mode_options_are_refused_with_a_scenario(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: list[str], named: str
) -> None:
    code, _, err = _run(capsys, str(_scenario(tmp_path)), *flags)
    assert code == 2
    line = _one_error_line(err)
    assert line.startswith(f"fedsim attack: {named}:") and "SCENARIO" in line


def test_set_needs_a_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "--set", "data.images=2")
    assert code == 2
    assert "--set" in _one_error_line(err)


@pytest.mark.parametrize("name", ["matrix-mnist", "matrix-cifar10"])
def test_paper_scenarios_are_valid(name: str) -> None:
    scenario = load_attack_scenario(REPO / "scenarios" / "paper" / f"{name}.toml")
    assert scenario.name == name and scenario.model.name == "cnn"
    assert scenario.attacks == ["bayes", "l2", "l1", "cos"]
    assert len(scenario.defenses) == 5 and scenario.defenses[0] == "none"
    assert (scenario.data.images, scenario.data.batch_size, scenario.data.split) == (20, 1, "test")
    assert scenario.budget.iterations is None
    assert scenario.tuning is not None
    assert (scenario.tuning.split, scenario.tuning.images) == ("train", 8)
    tv = {a: [p["tv"] for p in s["priors"]] for a, s in scenario.tuning.space.items()}
    assert set(tv) == set(scenario.attacks)  # every attack is tuned
    assert all(len(values) >= 3 and values == sorted(values) for values in tv.values())
