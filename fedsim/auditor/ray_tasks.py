"""`audit.worker = "ray"`: each round's attacks run as Ray tasks, one task per attack.

A round's tasks are submitted as soon as the round's updates are in, so the cluster's
nodes (and GPUs, `audit.gpus` per task) attack while the head serves the next rounds;
the auditor's worker thread then waits for them round by round, so the records are
appended in round order and, within a round, in (attack, client) order — the order of
the in-process worker. A task runs `AttackRunner.run_attack` on a copy of the runner
without the data set: the model, the attacks and their seeds, the defense's mechanism
and the job (start parameters, updates and the ground truth the head derived), so its
records equal the thread worker's.

A task Ray loses (its worker process or node dies, Ray's out-of-memory killer ends it)
is not retried: each of its cases is recorded `failed` with Ray's reason and the
federation goes on. When Ray itself is gone (the run's runtime crashed or shut down)
the round's audit is abandoned unrecorded, so `fedsim run --resume` redoes it.

Tasks spread over the nodes (Ray's SPREAD strategy). Each reserves `audit.cpus` CPUs
(default 1) — but 0 when the clients run on Flower's simulation engine, whose client
actors reserve every CPU of the cluster for the whole run, so that a task needing one
would never start; it then shares the CPUs with them.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from fedsim.auditor.attack_runner import AttackRunner
from fedsim.auditor.jobs import AttackResult, ClientCase, RoundJob
from fedsim.auditor.setup import AuditSetup


class AuditAbandoned(RuntimeError):
    """Ray shut down before a round's attack tasks returned; the round stays unaudited."""


class ModelCopy:
    """A picklable `build_model`: fresh copies of one template model."""

    def __init__(self, template: torch.nn.Module) -> None:
        self.template = template

    def __call__(self) -> torch.nn.Module:
        return copy.deepcopy(self.template)


def portable_setup(setup: AuditSetup) -> AuditSetup:
    """`setup` without what ties it to the head (the data set behind the ground truth)."""
    return dataclasses.replace(
        setup,
        build_model=ModelCopy(setup.build_model()),
        ground_truth=None,
        trained_batch=None,
        defense=None,
    )


def _attack_task(
    setup: AuditSetup, attacks: list[tuple[Any, Any]], index: int, job: RoundJob, threads: int
) -> list[tuple[int, AttackResult]]:
    """One attack on one round, on whichever node Ray chose: (case position, result) pairs."""
    from fedsim.device import resolve_device

    torch.set_num_threads(threads)
    runner = AttackRunner(setup, resolve_device(setup.device), attacks)
    position = {id(case): i for i, case in enumerate(job.cases)}
    return [(position[id(case)], result) for case, result in runner.run_attack(job, index)]


class RayAttacks:
    """Submits rounds of attacks to Ray; `submit` returns what waits for their results."""

    def __init__(self, runner: AttackRunner, cpus: float, gpus: float) -> None:
        import ray

        self.runner = runner
        self.threads = max(1, round(cpus))
        self._setup = ray.put(portable_setup(runner.setup))
        self._attacks = ray.put(runner.attacks)
        self._remote = ray.remote(_attack_task).options(
            num_cpus=cpus,
            num_gpus=gpus,
            max_retries=0,
            scheduling_strategy="SPREAD",
        )

    def submit(self, job: RoundJob) -> Callable[[], list[tuple[ClientCase, AttackResult]]]:
        """Start every attack of `job` now; the returned call waits and gives the
        outcomes in (attack, client) order, a lost task's cases recorded `failed`."""
        import ray

        shipped = ray.put(dataclasses.replace(job, rejected=[]))
        refs = [
            self._remote.remote(self._setup, self._attacks, index, shipped, self.threads)
            for index in range(len(self.runner.attacks))
        ]
        return lambda: self._collect(job, refs)

    def _collect(self, job: RoundJob, refs: list[Any]) -> list[tuple[ClientCase, AttackResult]]:
        import ray

        gone = _ray_gone()
        outcomes: list[tuple[ClientCase, AttackResult]] = []
        for index, ref in enumerate(refs):
            if not ray.is_initialized():
                raise AuditAbandoned(f"round {job.server_round}: Ray shut down")
            try:
                results = ray.get(ref)
            except gone as error:
                raise AuditAbandoned(f"round {job.server_round}: {error}") from error
            except Exception as error:  # noqa: BLE001 - a lost task: its cases are `failed`
                reason = _lost_reason(error)
                outcomes.extend(
                    (case, self.runner.lost_record(job, case, index, reason)) for case in job.cases
                )
                continue
            outcomes.extend((job.cases[position], result) for position, result in results)
        return outcomes


def _ray_gone() -> tuple[type[BaseException], ...]:
    import ray

    return (
        ray.exceptions.RaySystemError,
        ray.exceptions.RpcError,
        ray.exceptions.LocalRayletDiedError,
    )


def _lost_reason(error: BaseException) -> str:
    """Ray's reason, on one line: `lost on Ray: WorkerCrashedError: The worker died ...`."""
    import ray

    if isinstance(error, ray.exceptions.RayTaskError):
        cause = error.cause if error.cause is not None else error
        text = (str(cause).strip().splitlines() or [""])[-1]
        return f"the attack task raised: {type(cause).__name__}: {text}".strip()
    text = (str(error).strip().splitlines() or [""])[0]
    return f"lost on Ray: {type(error).__name__}: {text}".strip()
