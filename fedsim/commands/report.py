"""Turn the records of one or more runs into leakage curves, grids and an HTML page.

Several runs overlay in one figure for comparison. A run that stopped early is
reported as partial.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from fedsim.private_files import make_private, private_dir
from fedsim.report import load_run, plot_leakage, write_page
from fedsim.report.privacy import privacy_lines

NAME = "report"
HELP = "leakage-vs-round curves, grids and a page from run directories"
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
    private_dir(out)  # the page embeds reconstructions of private data
    curves = plot_leakage(runs, out / "leakage")
    page = write_page(runs, curves[0], out / "index.html")
    for path in [*curves, page]:
        make_private(path)
    console = Console()
    for run in runs:
        state = (
            f"partial: {run.finished_rounds} of {run.planned_rounds} rounds"
            if run.partial
            else "complete"
        )
        console.print(
            f"{run.name}: {len(run.rounds)} rounds, {len(run.leakage)} leakage records ({state})"
        )
        for line in privacy_lines(run.rounds):
            console.print(f"  {line}", markup=False, soft_wrap=True)
    for path in [*curves, page]:
        console.print(f"wrote {path}")
    return 0
