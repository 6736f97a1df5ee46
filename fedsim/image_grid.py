"""Originals over reconstructions as PNGs (matplotlib, no display needed): a labelled grid
for one batch, and a compact strip of every audited client of a round."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fedsim.private_files import make_private

GRID_IMAGES = 8
"""Images per client a grid of a deployment's or a proxy audit's round shows at most."""


def load_figures() -> None:
    """Load matplotlib and its default font (about a quarter second the first time), so
    that a run pays it while it is set up rather than in its first audited round."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(0.5, 0.5), dpi=50)
    figure.text(0.5, 0.5, "0", fontsize=8)
    figure.savefig(io.BytesIO(), format="png")


def save_image_grid(
    path: Path,
    rows: Sequence[tuple[str, torch.Tensor]],
    title: str = "",
    max_columns: int | None = None,
) -> None:
    """One row per (label, images (B, C, H, W) in [0, 1]), labelled on the left.

    At most `max_columns` images a row.
    """
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
    make_private(path)


@dataclass(frozen=True)
class ClientImages:
    """One audited client of a round: its private images and each attack's reconstructions.

    `rows` are (attack, images matched to the originals, recognisable flags or None).
    """

    client: int | str
    originals: torch.Tensor
    rows: Sequence[tuple[str, torch.Tensor, Sequence[bool] | None]]


_GAP, _CLIENT_GAP, _BORDER, _SCALE = 2, 10, 2, 2
_RECOGNISABLE_RGB = (0.10, 0.65, 0.25)


def _tile(image: torch.Tensor, flag: bool | None) -> np.ndarray:
    """(h, w, 3) of one image upscaled `_SCALE`×, framed green when recognisable."""
    pixels = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    pixels = pixels.repeat(_SCALE, axis=0).repeat(_SCALE, axis=1)
    framed = np.ones((pixels.shape[0] + 2 * _BORDER, pixels.shape[1] + 2 * _BORDER, 3))
    if flag:
        framed[:] = _RECOGNISABLE_RGB
    framed[_BORDER:-_BORDER, _BORDER:-_BORDER] = pixels
    return framed


def _line_mosaic(
    cases: Sequence[ClientImages], labels: Sequence[str]
) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """One line of client blocks: the mosaic, and (x centre, client) for the headers."""
    tile = _tile(cases[0].originals[0], None)
    th, tw = tile.shape[:2]
    columns = sum(len(c.originals) for c in cases)
    width = columns * (tw + _GAP) + (len(cases) - 1) * _CLIENT_GAP
    mosaic = np.ones((len(labels) * (th + _GAP), width, 3))
    headers = []
    x = 0
    for case in cases:
        rows = {label: (images, flags) for label, images, flags in case.rows}
        start = x
        for i in range(len(case.originals)):
            for r, label in enumerate(labels):
                if label == "original":
                    image, flag = case.originals[i], None
                elif label in rows and i < len(rows[label][0]):
                    images, flags = rows[label]
                    image, flag = images[i], None if flags is None else bool(flags[i])
                else:
                    continue
                y = r * (th + _GAP)
                mosaic[y : y + th, x : x + tw] = _tile(image, flag)
            x += tw + _GAP
        headers.append(((start + x - _GAP) / 2, str(case.client)))
        x += _CLIENT_GAP
    return mosaic, headers


def save_round_strip(
    path: Path, cases: Sequence[ClientImages], title: str = "", max_columns: int = 48
) -> None:
    """One compact PNG of an audited round: every client's originals over each attack's
    reconstructions, clients side by side (wrapped after `max_columns` images), a green
    frame around each reconstruction that is recognisable."""
    from matplotlib.figure import Figure

    labels = ["original"]
    for case in cases:
        labels += [label for label, _, _ in case.rows if label not in labels]
    lines: list[list[ClientImages]] = [[]]
    for case in cases:
        used = sum(len(c.originals) for c in lines[-1])
        if lines[-1] and used + len(case.originals) > max_columns:
            lines.append([])
        lines[-1].append(case)
    mosaics = [_line_mosaic(line, labels) for line in lines]
    dpi = 100
    label_width = 0.9
    width = max(m.shape[1] for m, _ in mosaics) / dpi + label_width + 0.1
    heights = [m.shape[0] / dpi + 0.25 for m, _ in mosaics]
    figure = Figure(figsize=(width, sum(heights) + (0.3 if title else 0.05)), dpi=dpi)
    top = 1.0 - (0.3 / figure.get_figheight() if title else 0.0)
    for (mosaic, headers), height in zip(mosaics, heights, strict=True):
        share = height / figure.get_figheight()
        left = label_width / width
        ax = figure.add_axes(
            (
                left,
                top - share,
                mosaic.shape[1] / dpi / width,
                (height - 0.25) / figure.get_figheight(),
            )
        )
        ax.imshow(mosaic, interpolation="nearest")
        ax.set_axis_off()
        row_height = mosaic.shape[0] / len(labels)
        for r, label in enumerate(labels):
            ax.text(-6, (r + 0.5) * row_height, label, ha="right", va="center", fontsize=8)
        for x, client in headers:
            ax.text(x, -4, f"client {client}", ha="center", va="bottom", fontsize=7)
        top -= share
    if title:
        figure.suptitle(title, fontsize=9, y=1.0 - 0.05 / figure.get_figheight(), va="top")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    make_private(path)
