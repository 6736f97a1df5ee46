"""Reports show every ε with its threat model, and say where one does not hold in the run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from defenses.accounting import RoundSchedule, privacy_claims
from fedsim.cli import main
from fedsim.report.privacy import privacy_lines

REPO = Path(__file__).resolve().parents[1]
NOTE = "the server recomputes every batch"


def _rounds(count: int) -> list[dict]:
    schedule = RoundSchedule(600, 1)
    return [
        {
            "round": r,
            "accuracy": 0.1,
            "loss": 2.3,
            "privacy": [
                c.to_json()
                for c in privacy_claims(
                    1.0, 1e-5, schedule, r, secret_sampling=False, public_sampling_note=NOTE
                )
            ],
        }
        for r in range(count + 1)
    ]


def _run_dir(path: Path, rounds: list[dict]) -> Path:
    path.mkdir(parents=True)
    (path / "scenario.toml").write_text('name = "dp"\n[federation]\nrounds = 3\n')
    (path / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds))
    leakage = {"round": 1, "client": 0, "attack": "bayes", "defense": "dpsgd", "psnr": 7.0,
               "status": "ok"}  # fmt: skip
    (path / "leakage.jsonl").write_text(json.dumps(leakage) + "\n")
    return path


def _epsilons(text: str) -> list[str]:
    """Every sentence fragment that states an ε."""
    return re.findall(r"ε = [^\n<]*", text)


def test_each_line_names_its_threat_model_and_the_violated_one_says_so() -> None:
    lines = privacy_lines(_rounds(3))
    assert len(lines) == 3
    subsampled, informed, user = lines
    assert (
        "amplified by subsampling" in subsampled
        and f"Does not hold in this run: {NOTE}" in subsampled
    )
    assert "informed adversary" in informed and "Does not hold" not in informed
    assert "user-level" in user
    assert all(line.startswith("after round 3: ε = ") for line in lines)


def test_a_bare_epsilon_of_an_older_run_is_not_shown_bare() -> None:
    (line,) = privacy_lines([{"round": 2, "epsilon": 0.69, "delta": 1e-5}])
    assert "recorded without its threat model" in line
    assert privacy_lines([{"round": 1, "accuracy": 0.5}]) == []


def test_fedsim_report_labels_every_epsilon(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = _run_dir(tmp_path / "run", _rounds(3))
    assert main(["report", str(run)]) == 0
    console = capsys.readouterr().out
    page = (run / "report" / "index.html").read_text()
    for text in (console, page):
        stated = _epsilons(text)
        assert len(stated) == 3
        assert all(any(t in s for t in ("subsampling", "informed", "user-level")) for s in stated)


def test_leakage_table_names_the_threat_model_of_each_epsilon_column(tmp_path: Path) -> None:
    run = _run_dir(tmp_path / "run", _rounds(3))
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "leakage_table.py"), str(run)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    header = next(line for line in out.splitlines() if line.startswith("| round"))
    assert "ε informed (q = 1)" in header and "ε user-level" in header
    assert "ε subsampled" in header and "| ε |" not in header
    assert f"† subsampled: does not hold in this run: {NOTE}" in out


def test_the_page_draws_the_bound_on_reconstruction_beside_what_the_attacks_made_recognisable(
    tmp_path: Path,
) -> None:
    from fedsim.cli import main
    from fedsim.report import load_run
    from fedsim.report.bound_figure import bound_by_round

    run = _run_dir(tmp_path / "b", _rounds(3))
    bound = {"kappa": 0.1, "kappa_source": "s", "bound": 0.5, "mu": 1.0, "method": "gdp",
             "success": "recognisable"}  # fmt: skip
    lines = [json.loads(x) for x in (run / "rounds.jsonl").read_text().splitlines()]
    with open(run / "rounds.jsonl", "w") as file:
        for line in lines:
            for claim in line.get("privacy", []):
                if claim["threat_model"] == "informed":
                    claim["reconstruction_bound"] = bound
            file.write(json.dumps(line) + "\n")
    record = {"round": 1, "client": 0, "attack": "bayes", "defense": "dpsgd", "status": "ok",
              "ssim_images": [0.9, 0.1], "psnr_images": [30.0, 10.0]}  # fmt: skip
    (run / "leakage.jsonl").write_text(json.dumps(record) + "\n")
    assert set(bound_by_round(load_run(run)).values()) == {0.5}  # batch size 1: the claim's own
    assert main(["report", str(run)]) == 0
    assert (run / "report" / "reconstruction-bound.png").stat().st_size > 1000
    assert "Reconstruction against its bound" in (run / "report" / "index.html").read_text()
