"""Launch a scenario on Flower's simulation engine (Ray), in this process.

Path chosen: `flwr.simulation.run_simulation`. It runs the ServerApp in a thread of
this process, so the auditor, the records and the live progress share memory with
the command that started them, and it needs no SuperLink, no app packaging and no
network. Flower marks it deprecated in favour of `flwr run`; that path starts a
SuperLink, packages the project as a Flower app and, unless told otherwise, installs
its dependencies into a fresh environment, and its ServerApp runs in another
process. The same ServerApp/ClientApp also run under `flwr run` (see
`fedsim.flower.server_app.app`), so moving over is a launcher change only.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass

from fedsim.flower.server_app import RunObserver, make_server_app
from fedsim.records import RunRecorder
from fedsim.scenario.config import Scenario


@dataclass(frozen=True)
class SimulationTiming:
    """Wall-clock seconds: the whole simulation and the engine's start-up (to the first reply)."""

    total: float
    startup: float | None


class _StartupClock:
    """Wraps an observer to note when the first round finishes (start-up ends before it)."""

    def __init__(self, inner: RunObserver | None) -> None:
        self.inner = inner
        self.first_round_at: float | None = None

    def round_finished(self, record: dict) -> None:
        if record["round"] == 1 and self.first_round_at is None:
            self.first_round_at = time.perf_counter()
        if self.inner is not None:
            self.inner.round_finished(record)

    def round_audited(self, server_round: int, records: list[dict]) -> None:
        if self.inner is not None:
            self.inner.round_audited(server_round, records)


def backend_config(scenario: Scenario) -> dict:
    """Ray resources from the scenario's [simulation] table."""
    simulation = scenario.simulation
    init_args: dict = {"include_dashboard": False, "log_to_driver": False}
    if simulation.num_cpus is not None:
        init_args["num_cpus"] = simulation.num_cpus
    if simulation.address is not None:
        init_args["address"] = simulation.address
    return {
        "client_resources": {
            "num_cpus": simulation.cpus_per_client,
            "num_gpus": simulation.gpus_per_client,
        },
        "init_args": init_args,
    }


def simulate(
    scenario: Scenario,
    recorder: RunRecorder | None,
    observer: RunObserver | None = None,
    resume_after: int = -1,
) -> SimulationTiming:
    """Run every round of `scenario` with one virtual SuperNode per client.

    `resume_after` = R ≥ 0 continues a run recorded through round R (`fedsim run --resume`).
    """
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    from flwr.simulation import run_simulation

    from fedsim.flower.client_app import app as client_app

    clock = _StartupClock(observer)
    if scenario.simulation.engine == "inprocess":
        return _simulate_in_process(scenario, recorder, clock, resume_after)
    threads = max(1, int(scenario.simulation.cpus_per_client))
    server_app = make_server_app(
        scenario, recorder, clock, torch_threads=threads, resume_after=resume_after
    )
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    flwr_logger.setLevel(logging.ERROR)
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_simulation(
                server_app=server_app,
                client_app=client_app,
                num_supernodes=scenario.federation.clients,
                backend_config=backend_config(scenario),
            )
    finally:
        flwr_logger.setLevel(level)
    total = time.perf_counter() - started
    startup = None if clock.first_round_at is None else clock.first_round_at - started
    return SimulationTiming(total, startup)


def _simulate_in_process(
    scenario: Scenario, recorder: RunRecorder | None, clock: _StartupClock, resume_after: int
) -> SimulationTiming:
    from fedsim.flower.client_app import app as client_app
    from fedsim.flower.local_grid import LocalGrid
    from fedsim.flower.server_app import run_federation

    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    flwr_logger.setLevel(logging.ERROR)
    started = time.perf_counter()
    try:
        grid = LocalGrid(client_app, scenario.federation.clients, seed=scenario.seed)
        run_federation(grid, scenario, recorder, clock, torch_threads=0, resume_after=resume_after)
    finally:
        flwr_logger.setLevel(level)
    total = time.perf_counter() - started
    startup = None if clock.first_round_at is None else clock.first_round_at - started
    return SimulationTiming(total, startup)
