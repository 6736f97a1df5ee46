"""Launch a scenario on Flower's simulation engine (Ray), in this process.

Path chosen: `flwr.simulation.run_simulation`. It runs the ServerApp in a thread of
this process, so the auditor, the records and the live progress share memory with
the command that started them, and it needs no SuperLink, no app packaging and no
network. Flower marks it deprecated in favour of `flwr run`; that path starts a
SuperLink, packages the project as a Flower app and, unless told otherwise, installs
its dependencies into a fresh environment, and its ServerApp runs in another
process. The same ServerApp/ClientApp also run under `flwr run` (see
`fedsim.flower.apps.server_app.app`), so moving over is a launcher change only.

fedsim connects to Ray itself (`fedsim.flower.runtimes.ray_cluster`: a cluster's address is
probed first, a local instance is asked for explicitly), so Flower's backend finds Ray
initialised and passes it no resources. When the runtime fails — Ray raises, a client's
worker dies, Ctrl-C — the ServerApp thread is stopped (`fedsim.flower.runtimes.runtime_guard`)
and waited for, so the run ends with its finished records and one error naming the cause.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from fedsim.errors import FedsimError
from fedsim.flower.apps.server_app import RunObserver, make_server_app
from fedsim.flower.runtimes.ray_cluster import start_ray, stop_ray
from fedsim.flower.runtimes.runtime_guard import RuntimeCrashed, RuntimeGuard, one_line
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
    """Flower's backend config: the resources each client's actor takes.

    No `init_args`: fedsim initialises Ray before Flower's backend would
    (`fedsim.flower.runtimes.ray_cluster.start_ray`), with the arguments Ray accepts for a
    cluster or for a local instance.
    """
    simulation = scenario.simulation
    return {
        "client_resources": {
            "num_cpus": simulation.cpus_per_client,
            "num_gpus": simulation.gpus_per_client,
        },
    }


STOP_WAIT_SECONDS = 60.0
"""How long a failed run waits for its ServerApp thread to record what it has."""


def simulate(
    scenario: Scenario,
    recorder: RunRecorder | None,
    observer: RunObserver | None = None,
    resume_after: int = -1,
    debug: bool = False,
) -> SimulationTiming:
    """Run every round of `scenario` with one virtual SuperNode per client.

    `resume_after` = R ≥ 0 continues a run recorded through round R (`fedsim run --resume`).
    A failure of the runtime raises `RuntimeCrashed` (one line naming the cause) once
    the ServerApp has stopped; `debug` leaves Flower's and Ray's logs on.
    """
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    clock = _StartupClock(observer)
    uses_ray = scenario.simulation.engine == "ray" or scenario.audit.worker == "ray"
    started_ray = start_ray(scenario.simulation, debug) if uses_ray else False
    try:
        with _quiet_flower(debug):
            if scenario.simulation.engine == "inprocess":
                return _simulate_in_process(scenario, recorder, clock, resume_after)
            return _simulate_on_ray(scenario, recorder, clock, resume_after)
    finally:
        if started_ray:
            stop_ray()


@contextlib.contextmanager
def _quiet_flower(debug: bool) -> Iterator[None]:
    """Flower logs a failure at ERROR, traceback and all, several times over; fedsim
    reports it once. `debug` keeps Flower's own level."""
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    if not debug:
        flwr_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        flwr_logger.setLevel(level)


def _simulate_on_ray(
    scenario: Scenario, recorder: RunRecorder | None, clock: _StartupClock, resume_after: int
) -> SimulationTiming:
    from flwr.simulation import run_simulation

    from fedsim.flower.apps.client_app import simulation_app as client_app

    guard = RuntimeGuard()
    threads = max(1, int(scenario.simulation.cpus_per_client))
    server_app = make_server_app(
        scenario, recorder, clock, torch_threads=threads, resume_after=resume_after, guard=guard
    )
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # run_simulation's deprecation, Ray's own
            run_simulation(
                server_app=server_app,
                client_app=client_app,
                num_supernodes=scenario.federation.clients,
                backend_config=backend_config(scenario),
            )
    except BaseException as error:
        guard.stop()  # a ServerApp still waiting for replies unwinds and records what it has
        guard.wait_finished(STOP_WAIT_SECONDS)
        if isinstance(error, Exception) and not isinstance(error, FedsimError | RuntimeCrashed):
            raise RuntimeCrashed(f"the simulation runtime failed: {one_line(error)}") from error
        raise
    total = time.perf_counter() - started
    startup = None if clock.first_round_at is None else clock.first_round_at - started
    return SimulationTiming(total, startup)


def _simulate_in_process(
    scenario: Scenario, recorder: RunRecorder | None, clock: _StartupClock, resume_after: int
) -> SimulationTiming:
    from fedsim.flower.apps.client_app import simulation_app as client_app
    from fedsim.flower.apps.server_app import run_federation
    from fedsim.flower.runtimes.local_grid import LocalGrid

    started = time.perf_counter()
    grid = LocalGrid(client_app, scenario.federation.clients, seed=scenario.seed)
    run_federation(grid, scenario, recorder, clock, torch_threads=0, resume_after=resume_after)
    total = time.perf_counter() - started
    startup = None if clock.first_round_at is None else clock.first_round_at - started
    return SimulationTiming(total, startup)
