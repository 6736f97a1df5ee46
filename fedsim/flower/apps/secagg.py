"""The server's half of secure aggregation: Flower's SecAgg+ on its legacy workflow.

`federation.secure_aggregation = true` runs the rounds with Flower's
`DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))` and a `LegacyContext` (in
Flower 1.42 SecAgg+ exists only there), instead of the Message-API strategy loop.
Clients quantise and mask their weights (`fedsim.flower.apps.secagg_client`); the server
sums the masked vectors, removes the masks with the key shares of at least
`reconstruction_threshold` neighbours, and only then hands the result to the
strategy: every FitRes that `aggregate_fit` receives holds the same unmasked
aggregate. So the auditor has nothing per client to attack: `SecAggFedAvg` asks it
to record `impossible` for each audited round and attack. What it has is the aggregate,
whose "batch" is the union of every client's batch: `SecAggFedAvg` hands it to the
auditor, which attacks it as one update (`fedsim.auditor.aggregate`).

What fedsim keeps from its Message-API path: seeded client sampling by partition id,
central evaluation, rounds.jsonl, checkpoints and `--resume` (a round offset). What
SecAgg+ changes: the aggregate equals FedAvg's up to the quantisation step
2·clipping_range / quantization_range per coordinate (every client reports
num_examples = batch_size, and max_weight is set to it, so the weights are exact);
values outside ±clipping_range are clipped before quantisation; replies cannot be
checked one by one (no `rejected`), and a client's metrics (partition id, training
loss) still travel in the clear.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from logging import INFO
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, RecordDict
from flwr.common import (
    FitIns,
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.logger import log
from flwr.server import ServerConfig
from flwr.server.client_manager import ClientManager, SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat import LegacyContext
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedsim.auditor.strategy import LeakageAuditor
from fedsim.device import resolve_device
from fedsim.flower.bookkeeping.round_end import RoundEnd, RunObserver
from fedsim.flower.bookkeeping.round_offset import starting_point
from fedsim.message_keys import PARTITION_KEY, SCENARIO_KEY, SEED_KEY, TORCH_THREADS_KEY
from fedsim.records import RunRecorder
from fedsim.scenario.audit import AttackConfig
from fedsim.scenario.build import Federation, build_federation
from fedsim.scenario.config import Scenario
from fedsim.scenario.loading import scenario_to_toml
from fedsim.strategies.sampling import learn_partitions, sampled_partitions

logger = logging.getLogger(__name__)

_NO_NOTES: dict[str, Any] = {
    "clients": [],
    "failures": 0,
    "missing": 0,
    "rejected": 0,
    "train_loss": None,
}


def secagg_workflow(scenario: Scenario) -> SecAggPlusWorkflow:
    """Flower's SecAgg+ workflow with the scenario's settings.

    `max_weight` is the batch size, the num_examples every fedsim client reports, so
    each client's weight quantises to exactly 1 and FedAvg's weighting is kept.
    """
    settings = scenario.federation.secagg
    return SecAggPlusWorkflow(
        num_shares=settings.num_shares,
        reconstruction_threshold=settings.reconstruction_threshold,
        max_weight=float(scenario.protocol.batch_size),
        clipping_range=settings.clipping_range,
        quantization_range=settings.quantization_range,
        modulus_range=settings.modulus_range,
        timeout=scenario.federation.round_timeout,
    )


def quantisation_step(scenario: Scenario) -> float:
    """Largest per-coordinate difference between the SecAgg+ and the plain FedAvg aggregate
    (weights within ±clipping_range; float rounding aside)."""
    settings = scenario.federation.secagg
    return 2 * settings.clipping_range / settings.quantization_range


def restore_dtypes(arrays: NDArrays, template: Sequence[np.dtype]) -> NDArrays:
    """The dequantised aggregate (float64) back in the model's dtypes (integers rounded)."""
    restored = []
    for array, dtype in zip(arrays, template, strict=True):
        if np.issubdtype(dtype, np.integer):
            restored.append(np.rint(array).astype(dtype))
        else:
            restored.append(np.asarray(array).astype(dtype))
    return restored


def wait_for_nodes(
    client_manager: ClientManager, count: int, timeout: float
) -> dict[str, ClientProxy]:
    """The registered nodes once `count` are (or `timeout` passed). Flower's workflow
    registers nodes when the manager is asked (`num_available`, `all`) or every 5 s;
    its `wait_for` would idle until the 5 s tick."""
    deadline = time.monotonic() + timeout
    while client_manager.num_available() < count and time.monotonic() < deadline:
        log(INFO, "Waiting for nodes: %d of %d connected.", client_manager.num_available(), count)
        time.sleep(1)
    return client_manager.all()


def failed_nodes(failures: Sequence[object]) -> int:
    """How many error replies `failures` holds: Flower's collect stage lists each of its
    errors twice (as two Exceptions around the same `Error`), so count distinct Errors."""
    return len({id(f.args[0]) if isinstance(f, Exception) and f.args else id(f) for f in failures})


class SecAggFedAvg(LegacyFedAvg):
    """Legacy FedAvg for SecAgg+'s workflow, with fedsim's round bookkeeping.

    `configure_fit` picks the round's clients (all, or the seeded sample of partitions),
    tells the auditor the round is hidden, and sends the fit config;
    `aggregate_fit` takes the aggregate SecAgg+ already computed, restores the model's
    dtypes and notes the round's clients, failures and training loss.
    """

    def __init__(
        self,
        federation: Federation,
        grid: Grid,
        auditor: LeakageAuditor,
        round_end: RoundEnd,
        initial: OrderedDict[str, torch.Tensor],
        *,
        offset: int = 0,
        resume_after: int = -1,
        torch_threads: int = 1,
    ) -> None:
        config = federation.scenario.federation
        super().__init__(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=config.per_round(),
            min_evaluate_clients=0,
            min_available_clients=config.clients,
            evaluate_fn=self._evaluate,
            initial_parameters=ndarrays_to_parameters([v.numpy() for v in initial.values()]),
        )
        self.federation = federation
        self.grid = grid
        self.auditor = auditor
        self.round_end = round_end
        self.names = list(initial)
        self.dtypes = [v.numpy().dtype for v in initial.values()]
        self.offset = offset
        self.resume_after = resume_after
        self.fit_config: dict[str, Scalar] = {
            SCENARIO_KEY: scenario_to_toml(federation.scenario),
            TORCH_THREADS_KEY: torch_threads,
            SEED_KEY: federation.scenario.seed,
        }
        self.node_of: dict[int, int] = {}
        """partition id → node id (learnt only when a sample of clients trains)."""
        self.notes: dict[int, dict[str, Any]] = {}
        self._sent: dict[int, int] = {}
        self._start: dict[int, NDArrays] = {}

    def __repr__(self) -> str:
        return "SecAggFedAvg"

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        server_round += self.offset
        scenario = self.federation.scenario
        self.auditor.record_secure_round(server_round)
        timeout = scenario.federation.round_timeout or 3600.0
        proxies = wait_for_nodes(client_manager, scenario.federation.clients, timeout)
        per_round = scenario.federation.per_round()
        if per_round < scenario.federation.clients:
            learn_partitions(self.grid, scenario.federation.clients, self.node_of, timeout)
            chosen = sampled_partitions(scenario.seed, server_round, list(self.node_of), per_round)
            selected = [proxies[str(self.node_of[p])] for p in chosen]
        else:
            selected = list(proxies.values())
        self._sent = {server_round: len(selected)}
        self._start = {server_round: parameters_to_ndarrays(parameters)}
        fitins = FitIns(parameters, {**self.fit_config, "server-round": server_round})
        return [(proxy, fitins) for proxy in selected]

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        server_round += self.offset
        sent = self._sent.pop(server_round, len(results))
        losses = [float(r.metrics.get("train-loss", float("nan"))) for _, r in results]
        counts = [r.num_examples for _, r in results]
        train_loss = (
            float(np.average(losses, weights=counts)) if results and sum(counts) > 0 else None
        )
        self.notes[server_round] = {
            "clients": sorted(
                int(r.metrics[PARTITION_KEY]) for _, r in results if PARTITION_KEY in r.metrics
            ),
            "failures": (failed := failed_nodes(failures)),
            "missing": max(0, sent - len(results) - failed),
            "rejected": 0,  # SecAgg+ hides each reply; none can be checked on its own
            "train_loss": train_loss,
        }
        if not results:
            return None, {}
        # SecAgg+ put the same unmasked aggregate into every FitRes.
        aggregate = parameters_to_ndarrays(results[0][1].parameters)
        clip = self.federation.scenario.federation.secagg.clipping_range
        if max(float(np.abs(a).max(initial=0.0)) for a in aggregate) >= clip * (1 - 1e-6):
            logger.warning(
                "round %d: the aggregate reaches ±%g, SecAgg+'s clipping range; clients'"
                " weights were probably clipped (raise federation.secagg.clipping_range)",
                server_round,
                clip,
            )
        restored = restore_dtypes(aggregate, self.dtypes)
        start = self._start.pop(server_round, None)
        if start is not None:
            self.auditor.attack_aggregate(
                server_round,
                self._state(restore_dtypes(start, self.dtypes)),
                self._state(restored),
                self.notes[server_round]["clients"],
            )
        metrics: dict[str, Scalar] = {} if train_loss is None else {"train-loss": train_loss}
        return ndarrays_to_parameters(restored), metrics

    def _state(self, arrays: NDArrays) -> OrderedDict[str, torch.Tensor]:
        return OrderedDict(
            (name, torch.from_numpy(np.array(a, dtype=dtype)))
            for name, a, dtype in zip(self.names, arrays, self.dtypes, strict=True)
        )

    def _evaluate(
        self, loop_round: int, arrays: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, dict[str, Scalar]] | None:
        server_round = loop_round + self.offset
        if server_round <= self.resume_after:
            return None  # recorded before the interruption
        state = self._state(arrays)
        notes = self.notes.pop(server_round, None)
        if notes is None:
            notes = dict(_NO_NOTES)
            if server_round >= 1:  # aggregate_fit never ran: SecAgg+ halted this round
                notes["missing"] = self._sent.pop(server_round, 0)
                logger.warning(
                    "round %d: secure aggregation halted (too few clients or shares);"
                    " the global model is unchanged",
                    server_round,
                )
        loss, accuracy = self.round_end.close(server_round, ArrayRecord(state), notes)
        return loss, {"accuracy": accuracy}


def run_secure_federation(
    grid: Grid,
    scenario: Scenario,
    recorder: RunRecorder | None,
    observer: RunObserver | None = None,
    torch_threads: int = 1,
    resume_after: int = -1,
    attacks: Sequence[tuple[AttackConfig, Any]] | None = None,
    noise_from_seed: bool = True,
) -> None:
    """All rounds of `scenario` under SecAgg+ (see the module doc); records as they happen.
    `noise_from_seed`: the clients derive their defense noise from the scenario seed."""
    federation = build_federation(scenario)
    auditor = LeakageAuditor(
        FedAvg(),  # not called on this path: only record_secure_round and close are
        federation,
        recorder=recorder,
        on_round_audited=observer.round_audited if observer is not None else None,
        attacks=attacks,
    )
    device = resolve_device(scenario.device)
    round_end = RoundEnd(federation, recorder, observer, device, noise_from_seed=noise_from_seed)
    offset, state = starting_point(federation, recorder, resume_after)
    initial = OrderedDict(state)
    strategy = SecAggFedAvg(
        federation,
        grid,
        auditor,
        round_end,
        OrderedDict((k, v.detach().cpu()) for k, v in initial.items()),
        offset=offset,
        resume_after=resume_after,
        torch_threads=torch_threads,
    )
    context = Context(
        run_id=grid.run.run_id, node_id=0, node_config={}, state=RecordDict(), run_config={}
    )
    legacy = LegacyContext(
        context,
        config=ServerConfig(num_rounds=scenario.federation.rounds - offset),
        strategy=strategy,
        client_manager=SimpleClientManager(),
    )
    try:
        DefaultWorkflow(fit_workflow=secagg_workflow(scenario))(grid, legacy)
    finally:
        auditor.close()  # interrupted or not: the records already submitted are written
        round_end.finish()
