"""Flower's quickstart-pytorch, audited with proxy data, on Flower's simulation engine.

The app (`tests/quickstart_app.py`) is built as the quickstart is — its CNN, loaders
with shuffle, SGD with momentum 0.9, one local epoch of three mini-batches — with the
README's auditor lines and the server's test set as `proxy_data`. Run as a user runs it
(`flwr run`'s simulation: `flwr.simulation.run_simulation`, clients on Ray), it must give
per audited round scored leakage of proxy clients marked `proxy`, the label counts the
real replies give away, verdicts, curves and the proxy note on the report's page, the
cost plan on the console and in `audit_plan.json`, and every round's audit within the
stated budget.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import pytest

from fedsim.cli import main as fedsim_main
from fedsim.records import LEAKAGE_FILE, RECONSTRUCTIONS_DIR, read_jsonl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import quickstart_app as app  # noqa: E402 - the app under test, beside this file

ROUNDS = 2
SLACK = 2.0
"""Seconds a round's audit may take beyond its budget: the proxy clients' training, the
label counts, the strip, and the last attack step past its deadline."""


@pytest.mark.slow
def test_quickstart_app_with_proxy_data_on_flowers_simulation_engine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from flwr.simulation import run_simulation

    caplog.set_level(logging.INFO, logger="fedsim.auditor")
    run_simulation(
        server_app=app.server_app(tmp_path, ROUNDS),
        client_app=app.client,
        num_supernodes=app.NUM_PARTITIONS,
        backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2}},
    )
    console = "\n".join(r.getMessage() for r in caplog.records if r.name == "fedsim.auditor")

    plan = json.loads((tmp_path / "audit_plan.json").read_text())
    assert plan["text"][0] in console  # stated before round 1, on the console and on disk
    (bayes,) = plan["attacks"]
    sizes = {call["batch_size"] for call in bayes["proxy"]}
    assert sizes and (bayes["fits"] or app.PARTITION_SIZE not in sizes)

    records = read_jsonl(tmp_path / LEAKAGE_FILE)
    real = [r for r in records if not r.get("proxy")]
    proxy = [r for r in records if r.get("proxy")]
    assert sorted(r["round"] for r in real) == [1, 1, 1, 2, 2, 2]
    assert {r["client"] for r in real} == set(range(app.NUM_PARTITIONS))
    assert {r["status"] for r in real} == ({"ok"} if bayes["fits"] else {"out_of_reach"})
    for record in real:  # the histogram every real reply gives away, at B = 24
        counts = record["label_counts"]
        assert sum(counts["recovered"].values()) == app.PARTITION_SIZE and counts["true"] is None
        assert record["ssim"] is None  # no ground truth for the real replies
    for server_round in range(1, ROUNDS + 1):
        mine = [r for r in proxy if r["round"] == server_round]
        assert {r["batch_size"] for r in mine} == sizes
        for record in mine:
            assert record["status"] in ("ok", "timeout")
            assert len(record["ssim_images"]) == record["batch_size"]
            assert len(record["ssim_guess_images"]) == record["batch_size"]
            assert record["label_counts"]["true"] is not None
            assert record["recognisable"] is not None and record["guess"]
    assert (tmp_path / RECONSTRUCTIONS_DIR / "round-0001-proxy.png").stat().st_size < 200_000

    took = [float(s) for s in re.findall(r"audit round \d+: .*\((\d+\.\d) s\)", console)]
    assert len(took) == ROUNDS
    assert max(took) <= plan["round_seconds_per_attack"] + SLACK, took

    assert fedsim_main(["report", str(tmp_path)]) == 0
    verdicts = {v["attack"] if not v["proxy"] else f"proxy {v['batch_size']}": v
                for v in json.loads((tmp_path / "report" / "verdicts.json").read_text())}  # fmt: skip
    assert set(verdicts) == {"bayes"} | {f"proxy {size}" for size in sizes}
    assert verdicts["bayes"]["label_counts"]["readable"] == ROUNDS * app.NUM_PARTITIONS
    assert (
        "The class histogram of every update is readable: 6 updates." in verdicts["bayes"]["text"]
    )
    for size in sizes:
        entry = verdicts[f"proxy {size}"]
        assert entry["updates_scored"] == entry["updates_audited"] > 0
        assert entry["label_counts"]["scored"] == entry["updates_audited"]
    page = (tmp_path / "report" / "index.html").read_text()
    assert "for a client like yours on proxy data" in page
    assert "(proxy, batch" in page and "6 client updates (none scored" in page
    assert (tmp_path / "report" / "leakage.png").is_file()
