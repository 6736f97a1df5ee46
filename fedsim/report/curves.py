"""Leakage-vs-round curves: PSNR per attack and defense, the global model's accuracy beside it."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from fedsim.report.runs import RunRecords


def plot_leakage(runs: Sequence[RunRecords], stem: Path) -> list[Path]:
    """Write `stem`.png and `stem`.svg; one line per run × attack × defense, min–max band.

    Several runs overlay for comparison; accuracy (dashed) uses the right axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, psnr_axis = plt.subplots(figsize=(8, 4.5))
    accuracy_axis = psnr_axis.twinx()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    several = len(runs) > 1
    dashes = ["--", ":", "-.", (0, (5, 1, 1, 1))]  # tells the runs' accuracy lines apart
    line = 0
    for index, run in enumerate(runs):
        prefix = f"{run.name}: " if several else ""
        for (attack, defense), by_round in sorted(run.series().items()):
            rounds = sorted(by_round)
            means = [statistics.fmean(by_round[r]) for r in rounds]
            colour = colours[line % len(colours)]
            line += 1
            psnr_axis.plot(
                rounds, means, marker="o", color=colour, label=f"{prefix}{attack} | {defense}"
            )
            psnr_axis.fill_between(
                rounds,
                [min(by_round[r]) for r in rounds],
                [max(by_round[r]) for r in rounds],
                color=colour,
                alpha=0.15,
            )
        rounds, accuracy = run.accuracy_by_round()
        if rounds:
            accuracy_axis.plot(
                rounds,
                accuracy,
                linestyle=dashes[index % len(dashes)],
                color="0.4",
                label=f"{prefix}accuracy",
            )
    from matplotlib.ticker import MaxNLocator

    psnr_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    psnr_axis.set_xlabel("round")
    psnr_axis.set_ylabel("PSNR of reconstructions (dB)")
    accuracy_axis.set_ylabel("global test accuracy")
    accuracy_axis.set_ylim(0, 1)
    title = "gradient leakage over training"
    if any(run.partial for run in runs):
        title += " (partial run)"
    psnr_axis.set_title(title)
    handles, labels = [], []
    for axis in (psnr_axis, accuracy_axis):
        h, lab = axis.get_legend_handles_labels()
        handles += h
        labels += lab
    if handles:
        psnr_axis.legend(handles, labels, fontsize=8, loc="best")
    psnr_axis.grid(alpha=0.3)
    figure.tight_layout()
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        figure.savefig(path, dpi=120)
    plt.close(figure)
    return paths
