"""Run a scenario: a Flower simulation with the leakage auditor, records written as it goes.

The run directory (default `<output>/<name>-<time>`, or exactly `--out`) receives the
resolved `scenario.toml`, `rounds.jsonl`, `leakage.jsonl` and `reconstructions/`.
While it runs, one line per round shows the global accuracy and the best PSNR of
each attack under the scenario's defense.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from rich.console import Console

from fedsim.flower.progress import RunProgress
from fedsim.records import RunRecorder, run_header
from fedsim.scenario.config import Scenario
from fedsim.scenario.loading import load_scenario, scenario_to_toml

NAME = "run"
HELP = "run a scenario: simulated federation, auditor, records"
READS_DATA = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", metavar="SCENARIO", help="scenario TOML file (see scenarios/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, dotted key and TOML value (protocol.lr=0.05, attacks.0.name='l2'); repeatable",
    )
    parser.add_argument(
        "--out", metavar="DIR", default=None, help="run directory (default: <output>/<name>-<time>)"
    )


def run_directory(scenario: Scenario, out: str | None, started: dt.datetime) -> Path:
    if out is not None:
        return Path(out)
    return Path(scenario.output) / f"{scenario.name}-{started.strftime('%Y%m%d-%H%M%S')}"


def main(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if getattr(args, "data_root", None):
        overrides.append(f"data.root={json.dumps(str(args.data_root))}")
    if getattr(args, "download", False):
        overrides.append("data.download=true")
    scenario = load_scenario(args.scenario, overrides)
    started = dt.datetime.now(dt.UTC)
    # Build data, partitions, defenses and attacks now, so a bad name fails before Ray starts.
    from fedsim.auditor.engine import AuditEngine
    from fedsim.auditor.setup import AuditSetup
    from fedsim.device import resolve_device
    from fedsim.scenario.build import build_federation

    federation = build_federation(scenario)
    AuditEngine(AuditSetup.from_federation(federation), resolve_device(scenario.device))
    run_dir = run_directory(scenario, args.out, started.astimezone())
    recorder = RunRecorder(run_dir)
    recorder.write_scenario(scenario_to_toml(scenario, run_header(scenario.seed, started)))

    from fedsim.flower.simulation import simulate

    console = Console()
    console.print(f"fedsim run: {scenario.name} → {run_dir}", highlight=False)
    with RunProgress(scenario, console) as progress:
        timing = simulate(scenario, recorder, progress)
    startup = "" if timing.startup is None else f", first round after {timing.startup:.1f} s"
    console.print(f"done in {timing.total:.1f} s{startup}; records in {run_dir}", highlight=False)
    return 0
