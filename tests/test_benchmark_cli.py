"""The speed benchmark's GPU mode on a machine without CUDA: skipped, with the reason printed."""

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
