"""Load test: many simulated clients, a sample of them each round, a few audited, many rounds.

One configuration (default: 100 clients, 10 a round, 2 audited a round, 20 rounds of
`scenarios/quickstart.toml` on the in-process engine, Bayes and L2 at 20 iterations,
attacks inline so that each round's seconds hold its audit) prints JSON: wall time,
peak RSS, the RSS and the time after each round, the median seconds per round and,
over the first and the second half of the rounds after a warm-up, the mean seconds
per round and the RSS growth (both flat when nothing grows with the rounds), record
counts and statuses, and the checkpoints kept (one, after the last complete round).

`--table` runs 100, 1,000 and 10,000 clients with 10 and 100 a round, each in a
process of its own (so each peak RSS is its own), `--repeats` times in alternating
order, and prints the JSON list and a Markdown table (per configuration the repeat
with the fewest seconds per round, and the largest peak RSS). 10,000 clients need
more images than the packaged MNIST sample holds: give the full MNIST with
`--data-root` (`--dataset mnist`).

    python scripts/load_test.py [--clients 100] [--per-round 10] [--rounds 20] [--worker inline|thread]
    python scripts/load_test.py --table --dataset mnist --data-root DIR [--rounds 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TABLE = [(clients, per_round) for clients in (100, 1_000, 10_000) for per_round in (10, 100)]


def rss_mib() -> float:
    """Resident memory of this process now (Linux /proc), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["inprocess", "ray"], default="inprocess")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--audited", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument(
        "--worker",
        choices=["inline", "thread"],
        default="inline",
        help="audit worker; inline (default) puts each round's attacks in its seconds",
    )
    parser.add_argument("--dataset", default="mnist-sample")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    parser.add_argument("--table", action="store_true", help="the 100/1,000/10,000-client table")
    parser.add_argument("--repeats", type=int, default=1, help="--table: runs per configuration")
    return parser.parse_args()


def run_one(args: argparse.Namespace) -> tuple[dict, bool]:
    from fedsim.flower.simulation import simulate
    from fedsim.records import LEAKAGE_FILE, ROUNDS_FILE, RunRecorder, read_jsonl
    from fedsim.scenario import load_scenario

    overrides = [
        f"federation.clients={args.clients}",
        f"federation.clients_per_round={args.per_round}",
        f"federation.rounds={args.rounds}",
        f"audit.clients.sample={args.audited}",
        f"audit.budget.iterations={args.iterations}",
        "audit.budget.seconds=10",
        "audit.grids=true",
        f"audit.worker='{args.worker}'",
        f"data.dataset='{args.dataset}'",
        "data.eval_samples=200",
        "device='cpu'",
        f"simulation.engine='{args.engine}'",
    ]
    # the data root where the data set is read from files (mnist-sample is packaged)
    root = (
        [f"data.root={json.dumps(str(Path(args.data_root).resolve()))}"] if args.data_root else []
    )
    scenario = load_scenario(REPO / "scenarios" / "quickstart.toml", overrides, soft=root)
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
                    "seconds": round(time.perf_counter() - started, 3),
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
    result = {
        "engine": args.engine,
        "dataset": args.dataset,
        "clients": args.clients,
        "clients_per_round": args.per_round,
        "audited_per_round": args.audited,
        "rounds": args.rounds,
        "attacks": [a.name for a in scenario.attacks],
        "attack_iterations": args.iterations,
        "audit_worker": args.worker,
        "wall_seconds": round(wall, 1),
        "simulation_seconds": round(timing.total, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **round_summary(per_round),
        "rss_after_round_mib": per_round,
        "round_records": len(rounds),
        "leakage_records": len(leakage),
        "statuses": statuses,
        "checkpoints_kept": sorted(p.name for p in (out / "checkpoints").glob("*.pt")),
        "run_dir": str(out),
    }
    expected = args.rounds * args.audited * len(scenario.attacks)
    return result, len(rounds) == args.rounds + 1 and len(leakage) == expected


WARM_UP = 2
"""Rounds left out of the per-round figures: round 1 also asks every node its partition,
and the first rounds allocate the buffers later rounds reuse."""


def round_summary(per_round: list[dict]) -> dict:
    """Seconds per round and RSS growth over each half of the rounds after the warm-up."""
    durations = [b["seconds"] - a["seconds"] for a, b in itertools.pairwise(per_round)]
    later = durations[WARM_UP:]
    rss = [p["rss_mib"] for p in per_round[WARM_UP:]]
    half, middle = len(later) // 2, len(rss) // 2
    return {
        "first_round_seconds": round(durations[0], 2) if durations else None,
        "seconds_per_round": round(statistics.median(later), 3) if later else None,
        "seconds_per_round_first_half": round(statistics.mean(later[:half]), 3) if half else None,
        "seconds_per_round_second_half": round(statistics.mean(later[half:]), 3) if half else None,
        "rss_growth_first_half_mib": round(rss[middle] - rss[0], 1) if middle else None,
        "rss_growth_second_half_mib": round(rss[-1] - rss[middle], 1) if middle else None,
    }


def run_table(args: argparse.Namespace) -> int:
    """Every configuration of TABLE in a fresh process, `--repeats` times in alternating
    order; per configuration the repeat with the fewest seconds per round (a shared
    machine only ever slows a run down) and the largest peak RSS. JSON, then Markdown."""
    runs: dict[tuple[int, int], list[dict]] = {config: [] for config in TABLE}
    ok = True
    for repeat in range(args.repeats):
        for clients, per_round in TABLE if repeat % 2 == 0 else TABLE[::-1]:
            result = _run_in_a_process(args, clients, per_round)
            if result is None:
                return 1
            ok = ok and result.pop("complete")
            runs[(clients, per_round)].append(result)
    results = []
    for config in TABLE:
        best = min(runs[config], key=lambda r: r["seconds_per_round"])
        best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs[config])
        best["repeats"] = len(runs[config])
        best["seconds_per_round_all_repeats"] = [r["seconds_per_round"] for r in runs[config]]
        results.append(best)
    json.dump(results, sys.stdout, indent=2)
    print("\n")
    print(markdown(results))
    return 0 if ok else 1


def _run_in_a_process(args: argparse.Namespace, clients: int, per_round: int) -> dict | None:
    command = [
        sys.executable,
        __file__,
        f"--clients={clients}",
        f"--per-round={per_round}",
        f"--rounds={args.rounds}",
        f"--audited={args.audited}",
        f"--iterations={args.iterations}",
        f"--worker={args.worker}",
        f"--dataset={args.dataset}",
        f"--engine={args.engine}",
    ]
    if args.data_root:
        command.append(f"--data-root={args.data_root}")
    done = subprocess.run(command, capture_output=True, text=True)
    if not done.stdout.strip():
        print(done.stderr, file=sys.stderr)
        return None
    result = json.loads(done.stdout)
    result.pop("rss_after_round_mib")
    result["complete"] = done.returncode == 0
    return result


def markdown(results: list[dict]) -> str:
    lines = [
        "| clients | per round | peak RSS | s/round | s/round, 1st / 2nd half | RSS growth, 1st / 2nd half |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['clients']:,} | {r['clients_per_round']} | {r['peak_rss_mib']:.0f} MiB"
            f" | {r['seconds_per_round']:.2f}"
            f" | {r['seconds_per_round_first_half']:.2f} / {r['seconds_per_round_second_half']:.2f}"
            f" | {r['rss_growth_first_half_mib']:+.0f} / {r['rss_growth_second_half_mib']:+.0f} MiB |"
        )
    return "\n".join(lines)


def main() -> int:
    args = arguments()
    if args.table:
        return run_table(args)
    result, complete = run_one(args)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
