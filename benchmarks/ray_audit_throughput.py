"""Attack throughput of the Ray audit worker (`audit.worker = "ray"`) with 1 and 2 worker nodes.

Each cluster is a loopback cluster on this machine (`fedsim.flower.runtimes.loopback_cluster`):
a head that holds no CPU, so no attack runs there, and 1 or 2 worker nodes of 1 CPU.
The work is the quickstart's audit (MNIST sample, CNN, Gaussian noise σ = 0.01, the
Bayes and L2 attacks): `--rounds` rounds of `--clients` real client updates, made on
the head as the federation would, every round's attacks submitted as Ray tasks at
once (one task per round and attack, 1 CPU each), timed until the last result is
back. A warm-up round per node comes first (Ray starts worker processes lazily).
The records of both cluster sizes are compared (seconds aside): they must be equal.

    python benchmarks/ray_audit_throughput.py [--rounds 8] [--clients 2] [--iterations 100]

Prints JSON: per cluster size the tasks, attacked updates, seconds and updates per
second, and the speed-up of 2 worker nodes over 1. On a machine with 2 cores the two
worker nodes share them with the head's own processes; say so when reporting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def make_jobs(scenario, rounds: int):  # noqa: ANN001, ANN201 - script
    """One RoundJob per round: the clients' real updates from the initial model, with
    the ground truth the auditor derives on the head."""
    from fedsim.auditor.attack_runner import ClientCase, RoundJob
    from fedsim.auditor.setup import AuditSetup
    from fedsim.flower.apps.local_update import local_update
    from fedsim.scenario.build import build_federation

    federation = build_federation(scenario)
    setup = AuditSetup.from_federation(federation)
    names = [name for name, _ in federation.build_model().named_parameters()]
    start = federation.build_model().state_dict()
    jobs = []
    for server_round in range(1, rounds + 1):
        job = RoundJob(server_round, {k: v.clone() for k, v in start.items()})
        for client in range(scenario.federation.clients):
            sent = local_update(federation, federation.build_model(), client, server_round).state
            case = ClientCase(client, setup.recover_update(start, sent, names))
            case.originals, case.true_labels = federation.client_batch(client, server_round)
            job.cases.append(case)
        jobs.append(job)
    return setup, jobs


def measure(setup, jobs, workers: int) -> dict:  # noqa: ANN001 - script
    """Throughput on a cluster of `workers` 1-CPU worker nodes and a CPU-less head."""
    from fedsim.auditor.attack_runner import AttackRunner
    from fedsim.auditor.ray_tasks import RayAttacks
    from fedsim.flower.runtimes.loopback_cluster import LoopbackCluster
    from fedsim.flower.runtimes.ray_cluster import start_ray, stop_ray
    from fedsim.scenario.config import SimulationConfig

    with LoopbackCluster(nodes=workers + 1, cpus=1, head_cpus=0) as address:
        start_ray(SimulationConfig(address=address))
        try:
            runner = AttackRunner(setup, torch.device("cpu"))
            remote = RayAttacks(runner, cpus=1.0, gpus=0.0)
            for wait in [remote.submit(jobs[0]) for _ in range(workers)]:
                wait()  # warm-up: each node's worker processes import torch and fedsim
            started = time.perf_counter()
            waits = [remote.submit(job) for job in jobs]
            outcomes = [wait() for wait in waits]
            seconds = time.perf_counter() - started
        finally:
            stop_ray()
    records = [result.record for round_outcomes in outcomes for _, result in round_outcomes]
    updates = len(records)
    return {
        "worker_nodes": workers,
        "tasks": len(jobs) * len(runner.attacks),
        "attacked_updates": updates,
        "statuses": sorted({r["status"] for r in records}),
        "seconds": round(seconds, 2),
        "updates_per_second": round(updates / seconds, 3),
        "records": [{k: v for k, v in r.items() if k != "seconds"} for r in records],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()

    from fedsim.scenario import load_scenario

    scenario = load_scenario(
        REPO / "scenarios" / "quickstart.toml",
        [
            f"federation.clients={args.clients}",
            f"federation.rounds={args.rounds}",
            f"audit.budget.iterations={args.iterations}",
            "audit.budget.seconds=1000",
            "audit.worker='ray'",
            "device='cpu'",
        ],
    )
    setup, jobs = make_jobs(scenario, args.rounds)
    runs = [measure(setup, jobs, workers) for workers in (1, 2)]
    same = runs[0].pop("records") == runs[1].pop("records")
    result = {
        "benchmark": "ray_audit_throughput",
        "attacks": [a.name for a in scenario.attacks],
        "iterations": args.iterations,
        "rounds": args.rounds,
        "clients_per_round": args.clients,
        "runs": runs,
        "speedup_2_over_1": round(runs[0]["seconds"] / runs[1]["seconds"], 2),
        "records_equal": same,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads_per_task": 1,
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
