"""The fedsim ServerApp: the scenario's strategy (FedAvg by default) wrapped by the leakage
auditor, evaluated centrally each round.

`run_federation` is the body; `make_server_app` binds it to a scenario for the
in-process simulation, and the module-level `app` reads `scenario` (a path) and
`out` (a run directory) from the run config for `flwr run` and the deployment engine.
Under `federation.secure_aggregation` the rounds run on Flower's SecAgg+ workflow
instead (`fedsim.flower.apps.secagg`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from logging import INFO
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from defenses.reconstruction import ReconstructionBound
from fedsim.auditor.setup import AuditSetup
from fedsim.auditor.strategy import LeakageAuditor
from fedsim.device import resolve_device
from fedsim.flower.apps.secagg import run_secure_federation
from fedsim.flower.bookkeeping.round_end import (
    RoundEnd,
    RoundNotes,
    RunObserver,
    audited_round_of,
    evaluate_model,
)
from fedsim.flower.bookkeeping.round_offset import RoundOffset, starting_point
from fedsim.flower.bookkeeping.what_runs import what_runs
from fedsim.flower.runtimes.runtime_guard import GuardedGrid, RuntimeGuard
from fedsim.message_keys import SCENARIO_KEY, TORCH_THREADS_KEY
from fedsim.records import RunRecorder, run_header
from fedsim.scenario.audit import AttackConfig
from fedsim.scenario.build import Federation, build_federation
from fedsim.scenario.config import Scenario
from fedsim.scenario.loading import load_scenario, scenario_to_toml
from fedsim.strategies.aggregators import (
    build_inner_strategy,
    has_state,
    restore_strategy_state,
    strategy_state,
)
from fedsim.strategies.ordering import PartitionOrder
from fedsim.strategies.reply_filter import ReplyFilter
from fedsim.strategies.sampling import SeededSampling

__all__ = [
    "RunObserver",
    "ServerStrategy",
    "app",
    "audited_round_of",
    "build_strategy",
    "evaluate_model",
    "make_server_app",
    "run_federation",
]


@dataclass(frozen=True)
class ServerStrategy:
    """The ServerApp's strategy stack, and the parts of it `run_federation` talks to."""

    loop: Strategy
    """The outermost wrapper: what Flower's round loop runs."""
    auditor: LeakageAuditor
    aggregator: Strategy
    """The strategy the scenario names, innermost: its state is checkpointed."""


def build_strategy(
    federation: Federation,
    recorder: RunRecorder | None,
    observer: RunObserver | None,
    attacks: Sequence[tuple[AttackConfig, Any]] | None = None,
    noise_from_seed: bool = True,
    notes: RoundNotes | None = None,
) -> ServerStrategy:
    """The scenario's strategy (`federation.strategy`, FedAvg by default) behind a reply
    filter (unusable replies dropped, not averaged), inside the auditor, inside seeded
    client sampling (when not every client trains each round), inside the reply ordering.

    The ordering and the filter report each round's replies and rejections to `notes`;
    the auditor reports each audited round to `observer`.
    Clients whose defense randomness is not `noise_from_seed` transform their batch (ATS)
    with draws the server cannot replay: the auditor then scores against the originals only.
    """
    federation_config = federation.scenario.federation
    per_round = federation_config.per_round()
    sampled = per_round < federation_config.clients
    aggregator = build_inner_strategy(
        federation_config.strategy,
        # Under SeededSampling the strategy sees only the round's sample and takes all of it.
        fraction_train=1.0 if sampled else per_round / federation_config.clients,
        fraction_evaluate=0.0,
        min_train_nodes=per_round,
        min_evaluate_nodes=0,
        min_available_nodes=per_round if sampled else federation_config.clients,
    )
    setup = AuditSetup.from_federation(federation)
    if not noise_from_seed:
        setup = dataclasses.replace(setup, trained_batch=None)
    auditor = LeakageAuditor(
        ReplyFilter(aggregator, on_rejected=None if notes is None else notes.rejected),
        setup,
        recorder=recorder,
        on_round_audited=observer.round_audited if observer is not None else None,
        attacks=attacks,
    )
    if federation.defense.states_privacy and federation.scenario.model.checkpoint is None:
        auditor.reconstruction_bound = functools.partial(informed_bound, federation)
    strategy: Strategy = auditor
    if sampled:
        strategy = SeededSampling(
            auditor, federation_config.clients, per_round, federation.scenario.seed
        )
    loop = PartitionOrder(strategy, on_round=None if notes is None else notes.replied)
    return ServerStrategy(loop, auditor, aggregator)


def informed_bound(federation: Federation, server_round: int) -> ReconstructionBound | None:
    """The reconstruction bound of the informed claim after `server_round` rounds."""
    claims = federation.privacy_spent(server_round) or []
    return next((c.reconstruction_bound for c in claims if c.threat_model == "informed"), None)


def run_federation(
    grid: Grid,
    scenario: Scenario,
    recorder: RunRecorder | None,
    observer: RunObserver | None = None,
    torch_threads: int = 1,
    attacks: Sequence[tuple[AttackConfig, Any]] | None = None,
    resume_after: int = -1,
    noise_from_seed: bool = True,
) -> None:
    """All rounds of `scenario`; records are written as they happen, attacks drained at the end.

    `noise_from_seed`: the clients derive their defense randomness from the scenario seed
    (fedsim's `simulation_app`); False for its deployable `app` (noise from OS entropy),
    which `flwr run` loads. The records' privacy claims and ground truth follow it.

    `attacks` replaces the scenario's attacks by (config, attack object) pairs.
    `resume_after` = R ≥ 0 continues a run whose records are complete through round R,
    from the checkpoint of round R (see `fedsim.checkpoints`); rounds ≤ R are not redone.
    A scenario with `model.checkpoint` starts from that state after its `checkpoint_round`
    (with a fresh strategy state: a state dict holds only the model).
    At the end of every round the global model (and the strategy's state, where it keeps
    one: `fedsim.strategies.aggregators`) is checkpointed and the records fsynced.
    """
    if scenario.federation.secure_aggregation:
        run_secure_federation(
            grid,
            scenario,
            recorder,
            observer,
            torch_threads,
            resume_after,
            attacks,
            noise_from_seed,
        )
        return
    federation = build_federation(scenario)
    notes = RoundNotes()
    stack = build_strategy(federation, recorder, observer, attacks, noise_from_seed, notes)
    aggregator = stack.aggregator
    stateful = has_state(aggregator)
    offset, initial_state = starting_point(federation, recorder, resume_after)
    device = resolve_device(scenario.device)
    round_end = RoundEnd(federation, recorder, observer, device, noise_from_seed=noise_from_seed)

    def evaluate(loop_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        server_round = loop_round + offset
        if server_round <= resume_after:
            return None  # recorded before the interruption
        state = strategy_state(aggregator) if stateful else None
        round_notes = notes.pop(server_round)
        loss, accuracy = round_end.close(server_round, arrays, round_notes, strategy_state=state)
        return MetricRecord({"loss": loss, "accuracy": accuracy})

    config = ConfigRecord(
        {SCENARIO_KEY: scenario_to_toml(scenario), TORCH_THREADS_KEY: torch_threads}
    )
    if stateful and resume_after >= 1 and recorder is not None:
        restore_strategy_state(aggregator, recorder.checkpoints.load_strategy(resume_after))
    initial = ArrayRecord(initial_state)
    loop: Strategy = RoundOffset(stack.loop, offset) if offset else stack.loop
    try:
        loop.start(
            grid=grid,
            initial_arrays=initial,
            num_rounds=scenario.federation.rounds - offset,
            timeout=scenario.federation.round_timeout or 3600.0,
            train_config=config,
            evaluate_config=ConfigRecord(dict(config)),
            evaluate_fn=evaluate,
        )
    finally:
        stack.auditor.close()  # interrupted or not: the audits already submitted are recorded
        round_end.finish()


def make_server_app(
    scenario: Scenario,
    recorder: RunRecorder | None,
    observer: RunObserver | None = None,
    torch_threads: int = 1,
    resume_after: int = -1,
    guard: RuntimeGuard | None = None,
) -> ServerApp:
    """A ServerApp bound to `scenario` (in-process simulation); with a `guard`, its grid
    stops waiting when the runtime ends and raises when a client's worker is lost."""
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        if guard is None:
            run_federation(
                grid, scenario, recorder, observer, torch_threads, resume_after=resume_after
            )
            return
        try:
            guarded = GuardedGrid(grid, guard)
            run_federation(
                guarded, scenario, recorder, observer, torch_threads, resume_after=resume_after
            )
        finally:
            guard.finished()

    return server


app = ServerApp()


def app_directory(grid: Grid) -> Path | None:
    """Where Flower unpacked this run's app (FAB), or None outside Flower's runtimes."""
    from flwr.common.config import get_project_dir

    try:
        run = grid.run
        return get_project_dir(run.fab_id, run.fab_version, run.fab_hash)
    except Exception:  # noqa: BLE001 - no FAB (in-process grids, run_simulation)
        return None


def resolve_scenario_path(value: str, app_dir: Path | None) -> Path:
    """A relative `scenario` is looked up in the app (FAB) first, then in the working directory."""
    path = Path(value).expanduser()
    if not path.is_absolute() and app_dir is not None and (app_dir / path).is_file():
        return app_dir / path
    return path


def split_overrides(text: str) -> list[str]:
    """The run config's `set`: `fedsim run --set` overrides separated by ';'."""
    return [part.strip() for part in text.split(";") if part.strip()]


@app.main()
def main(grid: Grid, context: Context) -> None:
    """`flwr run` entry: run config `scenario` (path), `set` (overrides), `out` (run directory).

    The run directory is written by this process, wherever Flower runs the ServerApp
    (a relative `out` or `output` is taken from that process's working directory).
    """
    config = context.run_config
    path = resolve_scenario_path(str(config["scenario"]), app_directory(grid))
    scenario = load_scenario(path, split_overrides(str(config.get("set", ""))))
    out = str(config.get("out") or "") or str(
        Path(scenario.output) / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    recorder = RunRecorder(out)
    # Flower's runtime runs the clients: the scenario's [simulation] is not used here.
    header = {**run_header(scenario.seed), "runs": what_runs(scenario, launcher="flwr run")}
    recorder.write_scenario(scenario_to_toml(scenario, header, acting=True))
    log(INFO, "fedsim: scenario %s, records in %s", path, Path(out).resolve())
    # The clients are `fedsim.flower.apps.client_app.app` (pyproject.toml): noise from OS entropy.
    run_federation(grid, scenario, recorder, noise_from_seed=False)
