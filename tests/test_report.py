"""`fedsim report` on run directories: curves, page, partial runs, escaping, several runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedsim.cli import main
from fedsim.errors import ConfigError
from fedsim.metrics.recognisable import RECOGNISABLE_SSIM
from fedsim.report import load_run


def _write_run(path: Path, rounds: int, planned: int, attack: str = "bayes") -> Path:
    path.mkdir(parents=True)
    (path / "scenario.toml").write_text(f'name = "{path.name}"\n[federation]\nrounds = {planned}\n')
    with open(path / "rounds.jsonl", "w") as file:
        for r in range(rounds + 1):
            file.write(
                json.dumps({"round": r, "loss": 2.3 - 0.1 * r, "accuracy": 0.1 + 0.1 * r}) + "\n"
            )
    with open(path / "leakage.jsonl", "w") as file:
        for r in range(1, rounds + 1):
            for client in range(2):
                record = {"round": r, "client": client, "attack": attack, "defense": "gaussian:sigma=0.1",
                          "psnr": 30.0 - 3 * r + client, "status": "ok"}  # fmt: skip
                file.write(json.dumps(record) + "\n")
            file.write(json.dumps({"round": r, "client": 2, "attack": attack, "defense": "gaussian:sigma=0.1",
                                   "psnr": None, "status": "timeout"}) + "\n")  # fmt: skip
        file.write('{"round": 9, "client"')  # a torn last line, as a killed run leaves
    return path


def test_report_writes_curves_and_a_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _write_run(tmp_path / "one", rounds=3, planned=3)
    assert main(["report", str(run)]) == 0
    report = run / "report"
    assert (report / "leakage.png").stat().st_size > 0
    assert (report / "leakage.svg").read_text().lstrip().startswith("<?xml")
    html = (report / "index.html").read_text()
    assert "data:image/png;base64," in html
    assert "Partial run" not in html
    assert "complete" in capsys.readouterr().out


def test_every_record_with_scores_counts_whatever_its_status(tmp_path: Path) -> None:
    records = load_run(_write_run(tmp_path / "one", rounds=2, planned=2))
    (facts,) = records.facts()
    assert [r.psnr for r in facts.rounds] == [[27.0, 28.0], [24.0, 25.0]]
    timed_out = {"round": 1, "client": 3, "attack": "bayes", "defense": "gaussian:sigma=0.1",
                 "psnr": 31.0, "ssim": 0.9, "status": "timeout"}  # fmt: skip
    records.leakage.append(timed_out)
    (facts,) = records.facts()
    first = facts.rounds[0]
    assert first.psnr == [27.0, 28.0, 31.0] and first.recovered == 1
    assert first.statuses == {"ok": 2, "timeout": 2} and first.unscored == 1


def test_scores_against_the_trained_on_batch_are_a_series_of_their_own(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "ats", rounds=1, planned=1)
    with open(run / "leakage.jsonl", "w") as file:
        record = {"round": 1, "client": 0, "attack": "adapted", "defense": "ats:policy=hybrid",
                  "psnr": 11.0, "psnr_trained_on": 19.0, "status": "ok"}  # fmt: skip
        file.write(json.dumps(record) + "\n")
    found = {f.series.label: [r.psnr for r in f.rounds] for f in load_run(run).facts()}
    assert found == {"adapted": [[11.0]], "adapted vs trained-on": [[19.0]]}


def test_partial_run_is_reported_as_partial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _write_run(tmp_path / "cut", rounds=2, planned=5)
    assert main(["report", str(run)]) == 0
    assert "partial: 2 of 5 rounds" in capsys.readouterr().out
    assert "Partial run: 2 of 5 rounds finished" in (run / "report" / "index.html").read_text()


def test_page_escapes_strings_from_records(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "x", rounds=1, planned=1, attack="<script>alert(1)</script>")
    assert main(["report", str(run)]) == 0
    html = (run / "report" / "index.html").read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_several_runs_overlay_in_one_report(tmp_path: Path) -> None:
    a = _write_run(tmp_path / "a", rounds=2, planned=2)
    b = _write_run(tmp_path / "b", rounds=2, planned=2, attack="l2")
    out = tmp_path / "compare"
    assert main(["report", str(a), str(b), "--out", str(out)]) == 0
    html = (out / "index.html").read_text()
    assert "<h2>a</h2>" in html and "<h2>b</h2>" in html


def test_not_a_run_directory_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a run directory"):
        load_run(tmp_path)


def _audited_run(
    path: Path, per_round: dict[int, list[list[float]]], accuracy: list[float]
) -> Path:
    """A run whose leakage lines carry per-image SSIMs: round → per client its images' SSIM."""
    path.mkdir(parents=True)
    (path / "scenario.toml").write_text(
        f'name = "{path.name}"\n[federation]\nrounds = {len(accuracy) - 1}\n'
    )
    with open(path / "rounds.jsonl", "w") as file:
        for r, value in enumerate(accuracy):
            file.write(json.dumps({"round": r, "loss": 1.0, "accuracy": value}) + "\n")
    with open(path / "leakage.jsonl", "w") as file:
        for r, clients in per_round.items():
            for client, ssims in enumerate(clients):
                record = {"round": r, "client": client, "attack": "bayes", "defense": "gaussian:sigma=0.01",
                          "status": "ok", "iterations": 200, "ssim_images": ssims,
                          "psnr_images": [10 + 20 * v for v in ssims]}  # fmt: skip
                file.write(json.dumps(record) + "\n")
    return path


def test_verdict_counts_updates_and_images_and_says_when_leakage_stopped(tmp_path: Path) -> None:
    run = _audited_run(
        tmp_path / "v",
        {1: [[0.9, 0.2], [0.7, 0.6]], 2: [[0.55, 0.1], [0.3, 0.2]], 5: [[0.1, 0.2], [0.35, 0.3]]},
        accuracy=[0.1, 0.3, 0.5, 0.6, 0.7, 0.9],
    )
    records = load_run(run)
    (facts,) = records.facts()
    assert [(r.round, r.accuracy, r.leaking, r.recovered) for r in facts.rounds] == [
        (1, 0.1, 2, 3),
        (2, 0.3, 1, 1),
        (5, 0.7, 0, 0),
    ]
    (verdict,) = records.verdicts()
    assert verdict.leaked is True
    assert verdict.text.startswith(
        "bayes recovered the private images through gaussian:sigma=0.01: in 3 of 6 scored"
        f" updates, 4 of 12 images (SSIM ≥ {RECOGNISABLE_SSIM} and above the guess"
    )
    assert "Nothing was recovered after round 2 (test accuracy 30 %)" in verdict.text


def test_a_verdict_without_leakage_names_the_budget_and_claims_no_protection(
    tmp_path: Path,
) -> None:
    run = _audited_run(tmp_path / "n", {1: [[0.1], [0.35]]}, accuracy=[0.1, 0.2])
    (verdict,) = load_run(run).verdicts()
    assert verdict.leaked is False
    assert "bayes recovered none of the private images in the 2 audited updates" in verdict.text
    assert "within 200 iterations" in verdict.text
    assert "does not show that gaussian:sigma=0.01 protects" in verdict.text


def test_secure_aggregation_is_reported_as_nothing_to_attack(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "s", rounds=0, planned=2)
    with open(run / "leakage.jsonl", "w") as file:
        for r in (1, 2):
            record = {"round": r, "client": None, "attack": "bayes", "defense": "none", "status": "impossible"}  # fmt: skip
            file.write(json.dumps(record) + "\n")
    (verdict,) = load_run(run).verdicts()
    assert verdict.leaked is None
    assert "Secure aggregation kept every client's update from the server" in verdict.text
    assert "The sum the server saw is still there to attack" in verdict.text


def test_report_draws_privacy_utility_and_epsilon_when_recorded(tmp_path: Path) -> None:
    run = _audited_run(tmp_path / "e", {1: [[0.9]], 2: [[0.2]]}, accuracy=[0.1, 0.4, 0.8])
    lines = [json.loads(x) for x in (run / "rounds.jsonl").read_text().splitlines()]
    with open(run / "rounds.jsonl", "w") as file:
        for line in lines:
            file.write(
                json.dumps({**line, "epsilon": 0.5 * line["round"] + 0.1, "delta": 1e-5}) + "\n"
            )
    assert main(["report", str(run)]) == 0
    report = run / "report"
    for name in ("leakage.png", "privacy-utility.png", "epsilon.png"):
        assert (report / name).stat().st_size > 1000, name
    html = (report / "index.html").read_text()
    assert "ε per round" in html and "threat model it holds under" in html


def test_a_folder_of_audited_states_reads_as_one_run_over_training(tmp_path: Path) -> None:
    """Audits of one training run's checkpoints (scripts/audit_checkpoints.py): each state
    run contributes its first rounds line (the state it starts from) and its audit."""
    folder = tmp_path / "audits"
    for state, accuracy in ((0, 0.1), (4, 0.6)):
        run = folder / f"state-{state:04d}"
        run.mkdir(parents=True)
        (run / "scenario.toml").write_text('name = "x"\n[federation]\nrounds = 9\n')
        lines = [{"round": state, "accuracy": accuracy}, {"round": state + 1, "accuracy": 0.99}]
        (run / "rounds.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        record = {"round": state + 1, "client": 0, "attack": "bayes", "defense": "none",
                  "status": "ok", "ssim_images": [0.9 if state == 0 else 0.1], "psnr_images": [30.0]}  # fmt: skip
        (run / "leakage.jsonl").write_text(json.dumps(record) + "\n")
    merged = load_run(folder)
    assert merged.name == "audits" and not merged.partial
    assert merged.accuracy_after() == {0: 0.1, 4: 0.6}
    (facts,) = merged.facts()
    assert [(r.round, r.accuracy, r.recovered) for r in facts.rounds] == [(1, 0.1, 1), (5, 0.6, 0)]
    assert main(["report", str(folder)]) == 0
    assert "Nothing was recovered after round 1" in (folder / "report" / "index.html").read_text()


def test_epsilon_curves_name_their_threat_model_and_say_where_they_do_not_hold(
    tmp_path: Path,
) -> None:
    run = _audited_run(tmp_path / "p", {1: [[0.9]]}, accuracy=[0.1, 0.4])
    lines = [json.loads(x) for x in (run / "rounds.jsonl").read_text().splitlines()]
    with open(run / "rounds.jsonl", "w") as file:
        for line in lines:
            claims = [
                {"threat_model": "subsampled", "epsilon": 0.1 * line["round"], "delta": 1e-5,
                 "statement": "s", "holds": False, "why_not": "public sampler"},
                {"threat_model": "user", "epsilon": None, "delta": 1e-5, "statement": "u",
                 "holds": True},
            ]  # fmt: skip
            file.write(json.dumps({**line, "privacy": claims}) + "\n")
    curves = load_run(run).epsilon_by_round()
    label = "ε, record-level, amplified by subsampling (does not hold here)"
    assert curves == {label: {0: 0.0, 1: 0.1}}  # a claim without a finite ε draws nothing


def test_no_epsilon_figure_when_only_round_zero_records_one(tmp_path: Path) -> None:
    from fedsim.report import plot_epsilon

    run = _audited_run(tmp_path / "z", {1: [[0.9]]}, accuracy=[0.1, 0.4])
    lines = [json.loads(x) for x in (run / "rounds.jsonl").read_text().splitlines()]
    with open(run / "rounds.jsonl", "w") as file:
        for line in lines:
            extra = {"epsilon": 0.0, "delta": 1e-5} if line["round"] == 0 else {}
            file.write(json.dumps({**line, **extra}) + "\n")
    assert plot_epsilon([load_run(run)], tmp_path / "epsilon") == []
