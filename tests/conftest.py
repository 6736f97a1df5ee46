"""Shared fixtures: the real data sets beside the repository, small models, seeded generators."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]

# CI replays the same examples every run (a red run must be reproducible); locally,
# hypothesis keeps exploring new ones.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

# A shell starts background jobs with Ctrl-C ignored, and an ignored signal stays ignored
# in every process started from it; the Ctrl-C tests need their runs to see SIGINT as a
# user's terminal delivers it, however pytest itself was started.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _shared_data_root() -> Path:
    """Real data in the standard layouts: $FEDSIM_TEST_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("FEDSIM_TEST_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _shared_data_root()
    if not (root / "MNIST" / "raw").is_dir():
        if os.environ.get("CI"):
            pytest.fail(
                f"real test data missing: expected MNIST/raw under {root} (set FEDSIM_TEST_DATA)"
            )
        pytest.skip(f"real test data not found under {root}; set FEDSIM_TEST_DATA to run this test")
    return root


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
