"""The benchmarks' command lines: the speed benchmark's GPU mode on a machine without CUDA
(skipped, with the reason printed), the overhead benchmark's parts of an audit job, and
the proxy-leakage benchmark's cells."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def test_attack_speed_on_cuda_says_why_it_is_skipped_without_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here: `attack_speed.py --device cuda` times it instead")
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "attack_speed.py"), "--device", "cuda"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["device"] == "cuda" and report["results"] == []
    assert "torch.cuda.is_available() is False" in report["skipped"]
    assert report["skipped"] in done.stderr


def test_audit_overhead_says_where_a_job_spends_its_time() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "audit_overhead.py"),
            "--repeats=1",
            "--set=federation.rounds=3",
            "--set=audit.rounds={ every = 1 }",
            "--set=audit.clients.sample=1",
            "--set=audit.budget.iterations=2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=REPO,
    )
    audited, unaudited = json.loads(done.stdout)["runs"]
    parts = audited["job_parts"]
    # one call of each part per audited round; the parts fit inside the job
    assert {p: parts[p]["calls"] for p in parts} == {
        "job": 3,
        "optimisation": 3,
        "label_inference": 3,
        "scoring": 3,
        "image_strip": 3,
        "records": 3,
    }
    inside = sum(parts[p]["first_ms"] for p in parts if p != "job")
    assert 0 < inside <= parts["job"]["first_ms"]
    assert unaudited["job_parts"] == {}


def test_proxy_leakage_counts_each_cell_as_the_judgement_does(
    data_root: Path, tmp_path: Path
) -> None:
    plot = tmp_path / "where.png"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "proxy_leakage.py"),
            f"--data-root={data_root}",
            *("--sizes", "1", "4", "--steps", "1", "4", "--attacks", "l2"),
            "--iterations=2",
            "--images=4",
            "--train-epochs=1",
            f"--plot={plot}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=REPO,
    )
    report = json.loads(done.stdout)
    for state in ("early", "trained"):
        cells = report["states"][state]["cells"]
        assert [(c["batch_size"], c["local_steps"]) for c in cells] == [(1, 1), (4, 1), (4, 4)]
        assert all(c["images"] == 4 and 0 <= c["recovered"] <= 4 for c in cells)
        assert cells[2]["mini_batch"] == 1 and cells[0]["statuses"] == ["ok"]
    assert plot.stat().st_size > 0
