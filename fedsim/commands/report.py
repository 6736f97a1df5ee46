"""Turn the records of one or more runs into a report: a verdict per defense and attack,
leakage curves, strips of reconstructions and a self-contained HTML page.

Several runs overlay in one figure for comparison (runs of several defenses: the
privacy–utility picture over training). A run that stopped early is reported as partial.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from fedsim.report import load_run, verdicts, write_report
from fedsim.report.privacy import privacy_lines

NAME = "report"
HELP = "verdict, leakage curves, reconstructions and a page from run directories"
READS_DATA = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs", nargs="+", type=Path, metavar="RUN", help="run directories written by `fedsim run`"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where to write the report (default: FIRST_RUN/report)",
    )


def main(args: argparse.Namespace) -> int:
    runs = [load_run(path) for path in args.runs]
    out: Path = args.out or runs[0].path / "report"
    written = write_report(runs, out)
    console = Console()
    for run in runs:
        state = (
            f"partial: {run.finished_rounds} of {run.planned_rounds} rounds"
            if run.partial
            else "complete"
        )
        console.print(
            f"{run.name}: {len(run.rounds)} rounds, {len(run.leakage)} leakage records ({state})",
            highlight=False,
        )
        for verdict in verdicts(run):
            console.print(f"  {verdict.heading}: {verdict.text}", highlight=False)
        for line in privacy_lines(run.rounds):
            console.print(f"  {line}", markup=False, soft_wrap=True)
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    return 0
