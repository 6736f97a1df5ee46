"""One module per `fedsim` sub-command: NAME, HELP, READS_DATA, add_arguments(parser), main(args)."""

from __future__ import annotations

import argparse


def add_scenario_options(parser: argparse.ArgumentParser, example: str, lead: str = "") -> None:
    """`--set KEY=VALUE` (repeatable, into `overrides`) and `--out DIR`, as every command
    that reads a scenario file takes them; `lead` prefixes both help texts."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"{lead}override a setting, dotted key and TOML value ({example}); repeatable",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help=f"{lead}run directory (default: <output>/<name>-<time>)",
    )
