"""How `fedsim attack` shows its results: a terminal table and a PNG grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from fedsim.attack_matrix import CellResult


def print_results(results: Sequence[CellResult], console: Console | None = None) -> None:
    """One row per attack × defense: images, PSNR mean and median (dB), SSIM, label accuracy, seconds."""
    table = Table(title="gradient leakage")
    for column in (
        "attack",
        "defense",
        "images",
        "PSNR mean",
        "PSNR median",
        "SSIM",
        "label acc",
        "seconds",
    ):
        table.add_column(column, justify="left" if column in ("attack", "defense") else "right")
    for r in results:
        table.add_row(
            r.attack,
            r.defense,
            str(r.images),
            f"{r.psnr_mean:.2f}",
            f"{r.psnr_median:.2f}",
            f"{r.ssim_mean:.3f}",
            f"{r.label_accuracy:.2f}",
            f"{r.seconds:.1f}",
        )
    (console or Console()).print(table)


def save_grid(rows: Sequence[tuple[str, torch.Tensor]], path: Path, max_columns: int = 10) -> None:
    """Images (N, C, H, W) in [0, 1], one labelled row each, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(max_columns, max(len(images) for _, images in rows))
    figure, axes = plt.subplots(
        len(rows), columns, figsize=(1.1 * columns + 1.6, 1.2 * len(rows)), squeeze=False
    )
    for axis_row, (label, images) in zip(axes, rows, strict=True):
        for index, axis in enumerate(axis_row):
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
            if index < len(images):
                image = images[index].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
                axis.imshow(
                    image.squeeze(-1) if image.shape[-1] == 1 else image,
                    cmap="gray",
                    vmin=0,
                    vmax=1,
                )
        axis_row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
