"""How `fedsim attack` shows its results: a terminal table and a PNG grid."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from fedsim.attack_matrix.cells import CellResult


def print_results(
    results: Sequence[CellResult],
    console: Console | None = None,
    rows: Sequence[str] | None = None,
) -> None:
    """One row per attack × defense: images, PSNR mean and median (dB), how many images are
    exact (at the PSNR cap), SSIM, the share of images recovered recognisably, label
    accuracy, seconds. `rows` names each result's row instead of its defense (a trained
    state's step and the defense)."""
    table = Table(title="gradient leakage")
    for column in ("attack", "defense"):
        table.add_column(column, no_wrap=True, overflow="fold")
    for column in ("n", "PSNR", "median", "exact", "SSIM", "recovered", "labels", "s"):
        table.add_column(column, justify="right", no_wrap=True)
    for r, row in zip(results, rows or [r.defense for r in results], strict=True):
        table.add_row(
            r.attack,
            row,
            str(r.images),
            f"{r.psnr_mean:.2f}",
            f"{r.psnr_median:.2f}",
            f"{r.psnr_summary.exact}/{r.images}",
            f"{r.ssim_mean:.3f}",
            f"{r.recognisable:.0%}",
            f"{r.label_accuracy:.2f}",
            f"{r.seconds:.1f}",
        )
    # Off a terminal (logs, pipes) rich would cut the table at 80 columns.
    width = shutil.get_terminal_size((160, 24)).columns
    (console or Console(width=max(width, 100))).print(table)
