"""The command line as a user meets it: help, listings, `fedsim attack`, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedsim.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fedsim.cli", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("list", "attack", "run", "report"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("what", "names"),
    [
        ("datasets", ["mnist-sample", "mnist", "fashion-mnist", "cifar10", "cifar100"]),
        ("models", ["cnn", "convbig", "convnet64", "precode", "mlp", "resnet18"]),
        ("defenses", ["gaussian", "laplacian", "gaussian-per-sample", "laplacian-per-sample"]),
        ("defenses", ["prune", "dpsgd", "soteria", "ats", "precode"]),
        ("attacks", ["bayes", "l2", "l1", "cos", "cos-paper", "gradinversion"]),
    ],
)
def test_list_shows_the_registries(
    capsys: pytest.CaptureFixture[str], what: str, names: list[str]
) -> None:
    os.environ["COLUMNS"] = "250"
    code, out, _ = _run(capsys, "list", what)
    assert code == 0
    for name in names:
        assert name in out


def test_attack_writes_the_documented_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_json, grid = tmp_path / "out.json", tmp_path / "grid.png"
    code, out, _ = _run(
        capsys,
        "attack",
        "--images", "2",
        "--attack", "l2:iterations=5,optimizer='adam'",
        "--attack", "bayes:iterations=5",
        "--defense", "gaussian:sigma=0.1",
        "--defense", "none",
        "--json", str(out_json),
        "--grid", str(grid),
    )  # fmt: skip
    assert code == 0
    results = json.loads(out_json.read_text())["results"]
    assert len(results) == 4  # 2 attacks × 2 defenses
    for entry in results:
        for key in ("attack", "defense", "dataset", "model", "images", "psnr", "psnr_mean", "ssim_mean", "label_accuracy", "seconds", "mechanism", "mechanism_reason"):  # fmt: skip
            assert key in entry
        assert entry["images"] == 2 and len(entry["psnr"]) == 2
        assert entry["label_accuracy"] == 1.0  # labels are granted by default
    assert grid.stat().st_size > 0
    assert "PSNR" in out
    for private in (out_json, grid):  # images of private data, as run directories are
        assert private.stat().st_mode & 0o077 == 0, private


def test_attack_reads_real_data_from_data_root(
    capsys: pytest.CaptureFixture[str], data_root: Path, tmp_path: Path
) -> None:
    code, _, _ = _run(
        capsys, "attack", "--dataset", "mnist", "--data-root", str(data_root), "--images", "1",
        "--attack", "l2:iterations=2,optimizer='adam'", "--json", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert code == 0
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["dataset"] == "mnist"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["attack", "--attack", "nosuch"], "nosuch"),
        (["attack", "--defense", "gaussian:sigma=-1"], "sigma"),
        (["attack", "--defense", "prune:p=1.5"], "'p'"),
        (["attack", "--defense", "soteria | dpsgd"], "soteria's change to the gradient"),
        (["attack", "--dataset", "imagenet"], "imagenet"),
        (["attack", "--model", "vgg"], "vgg"),
        (["attack", "--images", "0"], "--images"),
        (["attack", "--images", "100000"], "--images"),
        (["attack", "--attack", "bayes:nosuch=1"], "nosuch"),
        (["attack", "--dataset", "cifar10", "--data-root", "/nonexistent-fedsim-root"], "cifar"),
        (
            ["attack", "--device", "cuda:7"]
            if not __import__("torch").cuda.is_available()
            else ["attack", "--device", "tpu"],
            "device",
        ),
    ],
)
def test_user_errors_print_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    code, _, err = _run(capsys, *argv)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert named in lines[0]
    assert "Traceback" not in err


def test_attack_spec_values_may_hold_commas() -> None:
    from attacks.specs import parse_attack_spec

    spec = parse_attack_spec("l2:exclude=['body.0.weight', 'body.0.bias'],lr=0.05")
    assert spec.overrides == {"exclude": ["body.0.weight", "body.0.bias"], "lr": 0.05}


def test_adapted_attack_follows_the_defense(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_json = tmp_path / "adapted.json"
    code, _, _ = _run(
        capsys, "attack", "--images", "1", "--attack", "adapted:iterations=3",
        "--defense", "precode", "--defense", "gaussian:0.1", "--json", str(out_json),
    )  # fmt: skip
    assert code == 0
    results = {r["defense"]: r for r in json.loads(out_json.read_text())["results"]}
    assert results["precode:beta=0.003"]["attack"] == "adapted=analytic-fc"
    assert results["precode:beta=0.003"]["psnr_mean"] > 60  # exact inversion before the bottleneck
    assert results["gaussian:sigma=0.1"]["attack"] == "adapted=bayes"


def test_optimisation_attack_runs_against_a_sampling_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # PRECODE samples its bottleneck in train mode; candidates draw their own noise.
    code, _, err = _run(
        capsys, "attack", "--images", "1", "--attack", "l2:iterations=2", "--defense", "precode"
    )
    assert code == 0, err
