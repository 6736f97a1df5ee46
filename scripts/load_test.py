"""Load test: a 100-client federation, 10 clients a round, 2 audited updates a round, 20 rounds.

Runs `scenarios/quickstart.toml` with those settings (in-process engine by default,
small attack budget) and prints JSON: wall time, peak RSS, the RSS after each round
(to see that memory does not grow with the rounds), record counts and statuses, and
the checkpoints kept (one, after the last complete round).

    python scripts/load_test.py [--engine inprocess|ray] [--rounds 20] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    """Resident memory of this process now (Linux /proc), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["inprocess", "ray"], default="inprocess")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--audited", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = parser.parse_args()

    from fedsim.flower.simulation import simulate
    from fedsim.records import LEAKAGE_FILE, ROUNDS_FILE, RunRecorder, read_jsonl
    from fedsim.scenario import load_scenario

    scenario = load_scenario(
        REPO / "scenarios" / "quickstart.toml",
        [
            f"federation.clients={args.clients}",
            f"federation.clients_per_round={args.per_round}",
            f"federation.rounds={args.rounds}",
            f"audit.clients.sample={args.audited}",
            f"audit.budget.iterations={args.iterations}",
            "audit.budget.seconds=10",
            "audit.grids=true",
            "data.eval_samples=200",
            "device='cpu'",
            f"simulation.engine='{args.engine}'",
        ],
    )
    out = Path(args.out or tempfile.mkdtemp(prefix="fedsim-load-")) / "run"
    recorder = RunRecorder(out)
    per_round: list[dict] = []
    started = time.perf_counter()

    class Observer:
        def round_finished(self, record: dict) -> None:
            per_round.append(
                {
                    "round": record["round"],
                    "rss_mib": round(rss_mib(), 1),
                    "seconds": round(time.perf_counter() - started, 2),
                }
            )

        def round_audited(self, server_round: int, records: list[dict]) -> None:
            pass

    timing = simulate(scenario, recorder, Observer())
    wall = time.perf_counter() - started
    rounds = read_jsonl(out / ROUNDS_FILE)
    leakage = read_jsonl(out / LEAKAGE_FILE)
    statuses: dict[str, int] = {}
    for record in leakage:
        statuses[record["status"]] = statuses.get(record["status"], 0) + 1
    later = [p["rss_mib"] for p in per_round[len(per_round) // 2 :]]
    result = {
        "engine": args.engine,
        "clients": args.clients,
        "clients_per_round": args.per_round,
        "audited_per_round": args.audited,
        "rounds": args.rounds,
        "attacks": [a.name for a in scenario.attacks],
        "attack_iterations": args.iterations,
        "wall_seconds": round(wall, 1),
        "simulation_seconds": round(timing.total, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_round_mib": per_round,
        "rss_growth_second_half_mib": round(max(later) - min(later), 1) if later else None,
        "round_records": len(rounds),
        "leakage_records": len(leakage),
        "statuses": statuses,
        "checkpoints_kept": sorted(p.name for p in (out / "checkpoints").glob("*.pt")),
        "run_dir": str(out),
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    expected = args.rounds * args.audited * len(scenario.attacks)
    return 0 if len(rounds) == args.rounds + 1 and len(leakage) == expected else 1


if __name__ == "__main__":
    sys.exit(main())
