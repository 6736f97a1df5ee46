"""Originals over reconstructions as one PNG (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch


def save_image_grid(
    path: Path,
    rows: Sequence[tuple[str, torch.Tensor]],
    title: str = "",
    max_columns: int | None = None,
) -> None:
    """One row per (label, images (B, C, H, W) in [0, 1]), labelled on the left; at most `max_columns` images a row."""
    from matplotlib.figure import (
        Figure,  # a bare Figure needs no pyplot state, safe off the main thread
    )

    columns = max(int(images.shape[0]) for _, images in rows)
    if max_columns is not None:
        columns = min(columns, max_columns)
    figure = Figure(figsize=(1.0 + 1.1 * columns, 0.4 + 1.1 * len(rows)), dpi=100)
    axes = figure.subplots(len(rows), columns, squeeze=False)
    for r, (label, images) in enumerate(rows):
        images = images.detach().float().cpu().clamp(0, 1)
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < images.shape[0]:
                image = images[c].permute(1, 2, 0).numpy()
                if image.shape[2] == 1:
                    ax.imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=1)
                else:
                    ax.imshow(image)
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
