"""The report's figures: leakage per round, leakage against the global model's accuracy
(overlaid runs of several defenses give the privacy–utility picture over training),
and ε per round where a run records one.

Leakage is shown two ways: the mean PSNR of the reconstructions (min–max band over the
audited clients) and the share of images recovered recognisably
(`fedsim.metrics.recognisable`). Rounds go on a log axis when the audited rounds span
more than a decade and a half, as a log-spaced schedule does.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedsim.metrics.recognisable import RECOGNISABLE_SSIM
from fedsim.report.runs import AuditedRound, RunRecords

_DASHES = ["--", ":", "-.", (0, (5, 1, 1, 1))]
"""Line styles that tell overlaid runs' accuracy lines apart."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(
    runs: Sequence[RunRecords],
) -> list[tuple[str, RunRecords, list[AuditedRound]]]:
    """(legend label, run, audited rounds) per run × attack × defense with scored images."""
    several = len(runs) > 1
    lines = []
    for run in runs:
        prefix = f"{run.name}: " if several else ""
        for (attack, defense), rounds in sorted(run.audited_rounds().items()):
            scored = [r for r in rounds if r.images]
            if scored:
                lines.append((f"{prefix}{attack} | {defense}", run, scored))
    return lines


def _round_axis(axis: Any, rounds: Sequence[int], marked: Sequence[int] = ()) -> None:
    """Integer rounds; a log axis ticked at the `marked` (audited) rounds when they span
    more than a decade and a half."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    if rounds and min(rounds) >= 1 and max(rounds) / min(rounds) > 30:
        axis.set_xscale("log")
        ticks = sorted(set(marked)) if 2 <= len(set(marked)) <= 12 else None
        if ticks:
            axis.set_xticks(ticks)
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.xaxis.set_minor_formatter(NullFormatter())
    else:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("round")


def _save(figure: Any, stem: Path, svg: bool = False) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png")] + ([stem.with_suffix(".svg")] if svg else [])
    for path in paths:
        figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    return paths


def plot_leakage(runs: Sequence[RunRecords], stem: Path) -> list[Path]:
    """`stem`.png and .svg: PSNR per round with the accuracy beside it, and the share of
    images recovered recognisably per round."""
    plt = _pyplot()
    figure, (psnr_axis, share_axis) = plt.subplots(
        2, 1, figsize=(8, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    accuracy_axis = psnr_axis.twinx()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    every_round: list[int] = []
    audited: list[int] = []
    for index, (label, _, rounds) in enumerate(_series(runs)):
        colour = colours[index % len(colours)]
        x = [r.round for r in rounds]
        every_round += x
        audited += x
        psnr_axis.plot(
            x, [statistics.fmean(r.psnr) for r in rounds], marker="o", color=colour, label=label
        )
        psnr_axis.fill_between(
            x,
            [min(r.psnr) for r in rounds],
            [max(r.psnr) for r in rounds],
            color=colour,
            alpha=0.15,
        )
        share_axis.plot(x, [100 * (r.share or 0.0) for r in rounds], marker="o", color=colour)
    several = len(runs) > 1
    for index, run in enumerate(runs):
        accuracy = run.accuracy_after()
        if accuracy:
            x = sorted(r for r in accuracy if r >= 1) or sorted(accuracy)
            every_round += x
            accuracy_axis.plot(
                x,
                [accuracy[r] for r in x],
                linestyle=_DASHES[index % len(_DASHES)],
                color="0.4",
                label=f"{run.name + ': ' if several else ''}test accuracy",
            )
    _round_axis(share_axis, every_round, audited)
    psnr_axis.set_ylabel("PSNR of reconstructions (dB)")
    accuracy_axis.set_ylabel("global test accuracy")
    accuracy_axis.set_ylim(0, 1)
    share_axis.set_ylabel(f"images recognisable (%)\nSSIM ≥ {RECOGNISABLE_SSIM}")
    share_axis.set_ylim(-3, 103)
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
    share_axis.grid(alpha=0.3)
    figure.tight_layout()
    return _save(figure, stem, svg=True)


def plot_privacy_utility(runs: Sequence[RunRecords], stem: Path) -> list[Path]:
    """`stem`.png: leakage at each audited state against that state's test accuracy."""
    plt = _pyplot()
    figure, (share_axis, psnr_axis) = plt.subplots(1, 2, figsize=(10, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, _, rounds) in enumerate(_series(runs)):
        known = [r for r in rounds if r.accuracy is not None]
        if not known:
            continue
        colour = colours[index % len(colours)]
        x = [100 * r.accuracy for r in known]
        share_axis.plot(
            x, [100 * (r.share or 0.0) for r in known], marker="o", color=colour, label=label
        )
        psnr_axis.plot(x, [statistics.fmean(r.psnr) for r in known], marker="o", color=colour)
        for r, xi in zip(known, x, strict=True):
            share_axis.annotate(
                str(r.round), (xi, 100 * (r.share or 0.0)), fontsize=6, xytext=(2, 3),
                textcoords="offset points", color=colour,
            )  # fmt: skip
    for axis in (share_axis, psnr_axis):
        axis.set_xlabel("test accuracy of the attacked model (%)")
        axis.grid(alpha=0.3)
    share_axis.set_ylabel(f"images recognisable (%), SSIM ≥ {RECOGNISABLE_SSIM}")
    share_axis.set_ylim(-3, 103)
    psnr_axis.set_ylabel("mean PSNR (dB)")
    share_axis.set_title("leakage against utility (labels: round)", fontsize=10)
    if share_axis.get_legend_handles_labels()[0]:
        share_axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    return _save(figure, stem)


def plot_epsilon(runs: Sequence[RunRecords], stem: Path) -> list[Path]:
    """`stem`.png: every ε a run records per round; nothing when no run records one
    above 0 (the log axis has no place for round 0's ε = 0, and a folder of audited
    states started from checkpoints records ε only for its initial state)."""
    lines = []
    for run in runs:
        for key, values in sorted(run.epsilon_by_round().items()):
            spent = {r: v for r, v in values.items() if v > 0}
            if spent:
                lines.append((f"{run.name + ': ' if len(runs) > 1 else ''}{key}", spent))
    if not lines:
        return []
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 3.5))
    every_round: list[int] = []
    for label, values in lines:
        x = sorted(values)
        every_round += x
        axis.plot(x, [values[r] for r in x], marker=".", label=label)
    axis.set_yscale("log")
    _round_axis(axis, every_round)
    axis.set_ylabel("ε spent so far")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, stem)
