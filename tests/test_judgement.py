"""`fedsim.judgement`: every record that carries scores counts, holes make a verdict
inconclusive, recovered means beating the guess — and every reader shows the same."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedsim.cli import main
from fedsim.judgement import image_recovered, leakage_facts, row_recovered, verdicts
from fedsim.judgement.criteria import RECOGNISABLE_SSIM, ROW_CATEGORICAL, ROW_MSE_FACTOR
from fedsim.report import load_run


def _images(round_: int, client: int, ssims: list[float], status: str = "ok", **extra) -> dict:
    return {"round": round_, "client": client, "attack": "bayes", "defense": "gaussian:sigma=0.1",
            "status": status, "ssim_images": ssims, "psnr_images": [10 + 20 * v for v in ssims],
            "iterations": 200, "budget": {"iterations": 200, "seconds": 30.0}, **extra}  # fmt: skip


def test_a_timed_out_attacks_best_candidate_is_leakage_found() -> None:
    records = [_images(1, c, [0.9, 0.2], status="timeout", iterations=74) for c in range(3)]
    (verdict,) = verdicts(records)
    assert verdict.leaked is True and verdict.recovered == 3 and verdict.items == 6
    assert "3 attacks stopped at their 30 s time budget after 74 of 200 iterations" in verdict.text


def test_nothing_recovered_by_attacks_cut_short_is_inconclusive_not_safe() -> None:
    records = [_images(1, 0, [0.1], status="timeout", iterations=80), _images(1, 1, [0.2])]
    (verdict,) = verdicts(records)
    assert verdict.leaked is None and verdict.text.startswith("Inconclusive")
    assert "1 attack stopped at their 30 s time budget after 80 of 200 iterations" in verdict.text


def test_an_audit_with_holes_is_inconclusive_and_says_how_many() -> None:
    hole = {"round": 1, "client": 5, "attack": "bayes", "defense": "gaussian:sigma=0.1",
            "status": "failed", "message": "RuntimeError: boom"}  # fmt: skip
    (verdict,) = verdicts([_images(1, 0, [0.1, 0.2]), hole])
    assert verdict.leaked is None
    assert "1 audited update could not be attacked (1 failed: RuntimeError: boom)" in verdict.text
    assert verdict.as_json()["not_attacked"] == {"failed": 1}
    (leaked,) = verdicts([_images(1, 0, [0.9]), hole])  # leakage found outweighs holes
    assert leaked.leaked is True and "could not be attacked" in leaked.text


def test_a_reconstruction_counts_only_where_it_beats_the_guess() -> None:
    assert image_recovered(RECOGNISABLE_SSIM) and not image_recovered(RECOGNISABLE_SSIM - 1e-9)
    assert not image_recovered(0.5, guess_ssim=0.55)  # a grey tile the flat guess matches
    record = _images(1, 0, [0.5, 0.5], ssim_guess_images=[0.6, 0.1])
    (facts,) = leakage_facts([record])
    assert facts.rounds[0].recovered == 1


def test_feature_rows_get_a_verdict_by_the_row_criterion() -> None:
    assert row_recovered(0.01, 1.0, guess_mse=0.5, guess_categorical=0.5)
    assert not row_recovered(ROW_MSE_FACTOR * 0.5 + 1e-6, 1.0, 0.5, 0.5)  # not close enough
    assert not row_recovered(0.01, ROW_CATEGORICAL - 0.01, 0.5, 0.0)  # categories wrong
    assert not row_recovered(0.01, 1.0, 0.5, 1.0)  # no better than the guess on categories
    rows = {"round": 2, "client": 0, "attack": "bayes", "defense": "none", "status": "ok",
            "mse": 0.3, "categorical_accuracy": 0.9, "mse_rows": [0.001, 0.9],
            "categorical_rows": [1.0, 0.5], "mse_guess_rows": [0.8, 0.8],
            "categorical_guess_rows": [0.5, 0.5]}  # fmt: skip
    (verdict,) = verdicts([rows])
    assert verdict.leaked is True and verdict.domain == "rows"
    assert (verdict.recovered, verdict.items) == (1, 2)
    assert "1 of 2 feature rows" in verdict.text


def test_updates_attacked_without_ground_truth_are_counted_not_hidden() -> None:
    record = {"round": 1, "client": 0, "attack": "bayes", "defense": "none", "status": "ok",
              "objective": 1.0, "psnr": None, "ssim": None}  # fmt: skip
    (verdict,) = verdicts([record, {**record, "round": 2}])
    assert verdict.leaked is None and verdict.audited == 2
    assert "2 updates were attacked, but without ground truth" in verdict.text


# --- The property: no reader shows less leakage than the records hold ------------------

STATUSES = ("ok", "timeout", "failed", "oom", "rejected", "refused", "impossible")


@st.composite
def leakage_records(draw: st.DrawFn) -> list[dict]:
    records = []
    for _ in range(draw(st.integers(1, 12))):
        status = draw(st.sampled_from(STATUSES))
        record = {
            "round": draw(st.integers(1, 4)),
            "client": draw(st.integers(0, 5)),
            "attack": draw(st.sampled_from(["bayes", "l2"])),
            "defense": draw(st.sampled_from(["none", "gaussian:sigma=0.1"])),
            "status": status,
            "iterations": draw(st.integers(1, 200)),
            "budget": {"iterations": 200, "seconds": 5.0},
        }
        scored = (
            status in ("ok", "timeout")
            and draw(st.booleans())
            or (
                status == "failed" and draw(st.integers(0, 9)) == 0  # a failure that kept scores
            )
        )
        if scored and draw(st.booleans()):
            n = draw(st.integers(1, 4))
            unit = st.floats(0.0, 1.0, allow_nan=False)
            record["ssim_images"] = draw(st.lists(unit, min_size=n, max_size=n))
            record["psnr_images"] = [10.0 + 20 * v for v in record["ssim_images"]]
            if draw(st.booleans()):
                record["ssim_guess_images"] = draw(st.lists(unit, min_size=n, max_size=n))
        elif scored:
            n = draw(st.integers(1, 4))
            record["mse_rows"] = draw(st.lists(st.floats(0.0, 3.0), min_size=n, max_size=n))
            record["categorical_rows"] = draw(st.lists(st.sampled_from([0.5, 0.875, 1.0]),
                                                       min_size=n, max_size=n))  # fmt: skip
            record["mse_guess_rows"] = draw(st.lists(st.floats(0.01, 3.0), min_size=n, max_size=n))
            record["categorical_guess_rows"] = [0.5] * n
        records.append(record)
    return records


def _brute_force(records: list[dict]) -> dict[tuple[str, str], tuple[int, int]]:
    """(attack, defense) → (items recovered, items scored), counted record by record."""
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    for r in records:
        key = (r["attack"], r["defense"])
        hits, items = counts.get(key, (0, 0))
        if "ssim_images" in r:
            guesses = r.get("ssim_guess_images") or [None] * len(r["ssim_images"])
            flags = [image_recovered(s, g) for s, g in zip(r["ssim_images"], guesses, strict=True)]
        elif "mse_rows" in r:
            flags = [row_recovered(m, c, gm, gc) for m, c, gm, gc in zip(
                r["mse_rows"], r["categorical_rows"], r["mse_guess_rows"],
                r["categorical_guess_rows"], strict=True)]  # fmt: skip
        else:
            flags = []
        counts[key] = (hits + sum(flags), items + len(flags))
    return counts


@settings(max_examples=300, deadline=None)
@given(leakage_records())
def test_verdicts_count_every_scored_item_and_never_say_safe_over_holes(
    records: list[dict],
) -> None:
    expected = _brute_force(records)
    found = {(v.series.attack, v.defense): v for v in verdicts(records)}
    assert set(found) == set(expected)
    for key, verdict in found.items():
        hits, items = expected[key]
        assert (verdict.recovered, verdict.items) == (hits, items)
        assert verdict.leaked is (True if hits else verdict.leaked)
        if verdict.leaked is False:
            mine = [r for r in records if (r["attack"], r["defense"]) == key]
            assert all(r["status"] in ("ok", "timeout", "failed") for r in mine)
            assert not any(r["status"] == "timeout" and r["iterations"] < 200 for r in mine)
            assert hits == 0 and items > 0
        if hits:
            assert verdict.leaked is True


def _write_run(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "scenario.toml").write_text('name = "p"\n[federation]\nrounds = 4\n')
    rounds = [{"round": r, "loss": 1.0, "accuracy": 0.1 * r} for r in range(5)]
    (folder / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds))
    (folder / "leakage.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def _page_verdicts(html: str) -> list[str]:
    blocks = re.findall(r'<p class="verdict [a-z]+"><strong>(.*?)</strong>.*?<br>(.*?)</p>', html)
    return [f"{unescape(head)}: {unescape(text)}" for head, text in blocks]


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(records=leakage_records())
def test_console_page_and_verdicts_json_say_the_same(
    records: list[dict], tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    run = _write_run(tmp_path_factory.mktemp("run") / "p", records)
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    console = " ".join(capsys.readouterr().out.split())
    entries = json.loads((run / "report" / "verdicts.json").read_text())
    page = _page_verdicts((run / "report" / "index.html").read_text())
    expected = load_run(run).verdicts()
    assert [(v.recovered, v.items) for v in expected] == [
        (v.recovered, v.items) for v in verdicts(records)
    ]
    assert [e["text"] for e in entries] == [v.text for v in expected]
    assert page == [f"{v.heading}: {v.text}" for v in expected]
    for verdict in expected:
        assert " ".join(verdict.text.split()) in console


def test_fail_on_leak_exits_non_zero_only_when_something_leaked(tmp_path: Path) -> None:
    leaked = _write_run(tmp_path / "a", [_images(1, 0, [0.9])])
    safe = _write_run(tmp_path / "b", [_images(1, 0, [0.1])])
    assert main(["report", str(leaked), "--fail-on-leak"]) == 1
    assert main(["report", str(safe), "--fail-on-leak"]) == 0
    (entry,) = json.loads((leaked / "report" / "verdicts.json").read_text())
    assert entry["leaked"] is True and entry["recognisable_images"] == 1 and entry["images"] == 1
    assert {"attack", "defense", "statuses", "text"} <= set(entry)


# --- What the report reads and writes -------------------------------------------------


def test_a_link_in_reconstructions_is_never_embedded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n" + b"TOP-SECRET-CONTENT" * 10)
    run = _write_run(tmp_path / "r", [_images(1, 0, [0.9])])
    (run / "reconstructions").mkdir()
    (run / "reconstructions" / "round-0001.png").symlink_to(secret)
    (run / "reconstructions" / "round-0002.png").write_text("not a picture")
    assert main(["report", str(run)]) == 0
    html = (run / "report" / "index.html").read_text()
    import base64

    assert base64.b64encode(secret.read_bytes()[:24]).decode()[:24] not in html
    assert "round-0001.png: a link" in html and "round-0002.png: not a PNG file" in html


def test_an_output_directory_that_holds_files_is_refused_not_chmodded(tmp_path: Path) -> None:
    from fedsim.errors import ConfigError
    from fedsim.private_files import output_dir

    busy = tmp_path / "busy"
    busy.mkdir(mode=0o755)
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--out: .* already holds files"):
        output_dir(busy)
    assert busy.stat().st_mode & 0o777 == 0o755
    run = _write_run(tmp_path / "r", [_images(1, 0, [0.9])])
    assert main(["report", str(run), "--out", str(busy)]) == 2
    assert main(["report", str(run)]) == 0 and main(["report", str(run)]) == 0  # its own files


def test_the_aggregate_of_a_secure_round_is_a_series_of_its_own() -> None:
    hidden = {"round": 1, "client": None, "attack": "l2", "defense": "none",
              "status": "impossible"}  # fmt: skip
    summed = {**_images(1, 0, [0.1, 0.2], attack="l2", defense="none"), "client": None,
              "aggregate_of": [0, 1], "approximations": ["one training on the union"]}  # fmt: skip
    found = {v.attack: v for v in verdicts([hidden, summed])}
    assert set(found) == {"l2", "l2 on the aggregate"}
    assert found["l2"].leaked is None and "Secure aggregation kept" in found["l2"].text
    approximate = found["l2 on the aggregate"]
    assert approximate.leaked is None  # nothing recovered by an approximate model
    assert "Modelled approximately: one training on the union" in approximate.text


def test_proxy_audits_are_one_series_per_batch_size_apart_from_the_real_replies() -> None:
    real = {"round": 1, "client": 7, "attack": "bayes", "defense": "none", "status": "ok",
            "batch_size": 64, "psnr": None, "ssim": None}  # fmt: skip
    small = _images(1, 0, [0.9], defense="none", proxy=True, batch_size=1)
    large = _images(1, 0, [0.1] * 4, defense="none", proxy=True, batch_size=4)
    found = {v.attack: v for v in verdicts([real, small, large, {**small, "round": 2}])}
    assert set(found) == {"bayes", "bayes (proxy, batch 1)", "bayes (proxy, batch 4)"}
    assert found["bayes"].leaked is None and found["bayes"].audited == 1
    assert found["bayes (proxy, batch 1)"].leaked is True
    one = found["bayes (proxy, batch 1)"]
    assert (one.recovered, one.items) == (2, 2)
    assert found["bayes (proxy, batch 4)"].leaked is False
    assert "the proxy clients' images" in found["bayes (proxy, batch 1)"].text
    entry = found["bayes (proxy, batch 4)"].as_json()
    assert entry["proxy"] is True and entry["batch_size"] == 4
    assert found["bayes"].as_json()["batch_size"] is None


def test_label_counts_are_a_fact_of_every_series_with_and_without_ground_truth() -> None:
    def counts(recovered: dict | None, true: dict | None, guess: float | None) -> dict:
        if true is None:
            return {"method": "head", "recovered": recovered, "true": None, "accuracy": None,
                    "exact": None, "guess_accuracy": None}  # fmt: skip
        right = sum(min(n, (recovered or {}).get(c, 0)) for c, n in true.items()) / 4
        return {"method": "head", "recovered": recovered, "true": true, "accuracy": right,
                "exact": recovered == true, "guess_accuracy": guess}  # fmt: skip

    real = {"round": 1, "client": 0, "attack": "bayes", "defense": "none", "status": "ok",
            "psnr": None, "ssim": None}  # fmt: skip
    unread = {**real, "client": 2, "label_counts": counts(None, None, None)}
    read = [{**real, "client": c, "label_counts": counts({"3": 4}, None, None)} for c in (0, 1)]
    (verdict,) = verdicts(read)
    assert verdict.text.endswith("The class histogram of every update is readable: 2 updates.")
    assert verdict.label_counts == {"updates": 2, "readable": 2, "scored": 0, "exact": None,
                                    "mean_accuracy": None, "mean_guess_accuracy": None,
                                    "beats_even_split": None}  # fmt: skip
    (partly,) = verdicts([*read, unread])
    assert partly.text.endswith("The class histogram is readable in 2 of 3 updates.")

    true = {"1": 2, "2": 2}
    proxy = [
        _images(1, 0, [0.1], proxy=True, batch_size=4, label_counts=counts(true, true, 0.5)),
        _images(2, 0, [0.1], proxy=True, batch_size=4,
                label_counts=counts({"1": 3, "5": 1}, true, 0.5)),
    ]  # fmt: skip
    (scored,) = verdicts(proxy)
    assert scored.text.endswith(
        "Label counts: the class histogram was recovered exactly in 1 of 2 updates (75 % of"
        " the labels counted right on average; an even split over the classes gets 50 %)."
    )
    entry = scored.as_json()["label_counts"]
    assert (entry["exact"], entry["scored"], entry["beats_even_split"]) == (1, 2, True)
    assert entry["mean_accuracy"] == pytest.approx(0.75)
    (without,) = verdicts([_images(1, 0, [0.1])])
    assert without.label_counts is None and "histogram" not in without.text
