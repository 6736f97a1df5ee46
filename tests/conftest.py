"""Shared fixtures (the real data sets beside the repository, seeded generators) and how
`pytest -n N` (pytest-xdist) spreads the test modules over workers."""

from __future__ import annotations

import importlib.util
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


def _torch_threads() -> int:
    """Torch threads per test process: at most 2, and the cores shared among pytest-xdist's
    workers (`pytest -n`), so that parallel workers do not oversubscribe the machine."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(2, (os.cpu_count() or 1) // workers))


# The processes tests start (a `fedsim run`, Flower's app processes) share the cores alike.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", str(_torch_threads()))


RAY_MODULES = frozenset(
    {
        "test_federation.py",
        "test_flower_quickstart_app.py",
        "test_flower_standalone.py",
        "test_golden_records.py",
        "test_ray_cluster.py",
        "test_secagg.py",
    }
)
"""Modules with tests that start Ray: `pytest -n N` runs them on one worker, one after
another, so that two Ray instances, each sized to the whole machine, never run at once."""


if importlib.util.find_spec("xdist"):  # pytest refuses a hook of a plugin it lacks

    def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
        """`pytest -n N`, whatever `--dist` says: a module's tests run on one worker (its
        module fixtures are built once), and the `RAY_MODULES` all on one worker."""
        from xdist.scheduler import LoadScopeScheduling

        class ModulesAndRay(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                module = nodeid.split("::", 1)[0]
                return "ray" if Path(module).name in RAY_MODULES else module

        return ModulesAndRay(config, log)


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


@pytest.fixture
def single_thread():
    """One torch thread for the test: tiny attacks run fastest so, above all on a machine
    busy with other work (use with `pytestmark = pytest.mark.usefixtures("single_thread")`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(_torch_threads())
