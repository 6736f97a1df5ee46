"""The `fedsim` command line: list, attack, run, report.

Errors a user can cause print one line and exit with status 2; every command that
reads data takes `--data-root` (default: $FEDSIM_DATA, else the user cache directory).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table

from fedsim import __version__


def _user_errors() -> tuple[type[Exception], ...]:
    from attacks.errors import AttackError
    from defenses.errors import DefenseError
    from fedsim.errors import FedsimError

    return (FedsimError, AttackError, DefenseError)


def _print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    Console().print(table)


def _cmd_list(args: argparse.Namespace) -> int:
    what: str = args.what
    if what == "datasets":
        from fedsim.data import DATASET_COLUMNS, dataset_rows

        _print_table("data sets", DATASET_COLUMNS, dataset_rows())
    elif what == "models":
        from fedsim.data import get_dataset
        from fedsim.models import model_rows

        mnist = model_rows(get_dataset("mnist").info)
        cifar = model_rows(get_dataset("cifar10").info)
        rows = [
            (m.name, f"{m.parameters:,} / {c.parameters:,}", m.summary, m.reference)
            for m, c in zip(mnist, cifar, strict=True)
        ]
        _print_table(
            "models", ["name", "parameters (MNIST / CIFAR-10)", "summary", "reference"], rows
        )
    elif what == "defenses":
        from defenses import list_defenses

        rows = [
            (d.name, d.parameters_text, d.effect, d.mechanism, d.reference) for d in list_defenses()
        ]
        _print_table(
            "defenses", ["name", "parameters", "what it does", "mechanism", "reference"], rows
        )
    elif what == "attacks":
        from attacks import ATTACKS

        rows = [
            (
                name,
                ", ".join(sorted(cls.needs)) or "-",
                (cls.__doc__ or "").strip().splitlines()[0],
                cls.reference,
            )
            for name, cls in ATTACKS.items()
        ]
        _print_table("attacks", ["name", "needs", "summary", "reference"], rows)
    return 0


def _add_data_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-root",
        metavar="DIR",
        default=None,
        help="folder with the data sets in their standard layouts (default: $FEDSIM_DATA, else the user cache)",
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="download missing data set files into the data root (checked against published checksums)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedsim",
        description="Federated-learning simulator with a built-in gradient-leakage adversary.",
    )
    parser.add_argument("--version", action="version", version=f"fedsim {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list data sets, models, defenses or attacks")
    listing.add_argument("what", choices=["datasets", "models", "defenses", "attacks"])
    listing.set_defaults(handler=_cmd_list)

    from fedsim.commands import attack, report, run

    for module in (attack, run, report):
        sub = commands.add_parser(module.NAME, help=module.HELP, description=module.__doc__)
        module.add_arguments(sub)
        if module.READS_DATA:
            _add_data_root(sub)
        sub.set_defaults(handler=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `fedsim` console script (`argv` None: this process's arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        code = handler(args)
    except _user_errors() as error:
        print(f"fedsim {args.command}: {error}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(f"fedsim {args.command}: interrupted", file=sys.stderr)
        code = 130
    return _leave(code) if argv is None else code


LEFTOVER_GRACE_SECONDS = 5.0


def _leave(code: int) -> int:
    """Exit with `code` even if threads a failed runtime left behind are still blocked.

    When Flower's simulation engine is stopped by a failure or Ctrl-C, its worker
    threads may still wait on clients that Ray will never answer, and a Python process
    does not exit before its threads do. By now every record is on disk and Ray is shut
    down, so after a short grace the process leaves without them.
    """
    main_thread = threading.main_thread()
    leftover = [
        t for t in threading.enumerate() if t is not main_thread and not t.daemon and t.is_alive()
    ]
    deadline = time.monotonic() + LEFTOVER_GRACE_SECONDS
    for thread in leftover:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in leftover):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
