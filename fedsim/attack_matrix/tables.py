"""Markdown tables of an attack scenario run: mean PSNR and mean SSIM, defenses × attacks.

Where images hit the PSNR cap (exact reconstructions) a cell shows its median and the
fraction at the cap beside the mean (`fedsim.metrics.capped`).
"""

from __future__ import annotations

from collections.abc import Sequence

from fedsim.attack_matrix.config import AttackScenario
from fedsim.attack_matrix.results import ScenarioCell


def markdown_tables(
    scenario: AttackScenario, rows: Sequence[str], cells: Sequence[ScenarioCell]
) -> str:
    """Mean PSNR and mean SSIM, one row per defense (per state and defense where trained
    states are attacked, `ScenarioCell.row`) and one column per attack."""
    from fedsim.metrics.psnr import PSNR_CAP_DB

    columns = list(scenario.attacks)
    by_cell = {(c.row, c.column): c.result for c in cells}

    def table(metric: str, digits: int) -> list[str]:
        lines = [
            "| defense | " + " | ".join(columns) + " |",
            "|---|" + "---:|" * len(columns),
        ]
        for defense in rows:
            found = {c: by_cell[(defense, c)] for c in columns if (defense, c) in by_cell}
            values = {column: getattr(cell, f"{metric}_mean") for column, cell in found.items()}
            texts = {
                column: (
                    cell.psnr_summary.text(digits)
                    if metric == "psnr"
                    else f"{values[column]:.{digits}f}"
                )
                + _stand_in(cell.attack)
                for column, cell in found.items()
            }
            top = max(values.values(), default=None)
            row = [
                f"**{texts[c]}**" if c in values and f"{values[c]:.{digits}f}" == f"{top:.{digits}f}"
                else texts.get(c, "")
                for c in columns
            ]  # fmt: skip
            lines.append(f"| {defense} | " + " | ".join(row) + " |")
        return lines

    data = scenario.data
    about = (
        f"{data.dataset}, {data.split} {_span(data.index_range())}"
        f" ({data.images} per cell, batches of {data.batch_size}), model {scenario.model.name}"
        + _trained(scenario)
        + ","
        f" labels {data.labels}, iterations "
        + (
            str(scenario.budget.iterations)
            if scenario.budget.iterations
            else "each attack's default"
        )
        + f", restarts {scenario.budget.restarts}, seed {scenario.seed}"
    )
    tuning = scenario.tuning
    if tuning is not None and (tuning.space or tuning.sweep):
        names = {**dict.fromkeys(tuning.sweep), **dict.fromkeys(tuning.space)}
        tuned = "; ".join(
            f"{name}: {_tuned_names(name, tuning.space.get(name, {}), tuning.sweep.get(name))}"
            for name in names
        )
        about += f"; tuned on {tuning.split} {_span(tuning.index_range(data.batch_size))} ({tuned})"
    return "\n".join(
        [
            f"# {scenario.name}",
            "",
            f"Mean PSNR (dB, each image capped at {PSNR_CAP_DB:g}) after optimal matching;"
            " where images reach the cap (exact), the median and how many did;"
            " best attack per defense (by mean) in bold.",
            "",
            *table("psnr", 2),
            "",
            "Mean SSIM; best attack per defense in bold.",
            "",
            *table("ssim", 3),
            "",
            about + ".",
            "",
        ]
    )


def _stand_in(attack: str) -> str:
    """' (l2-surrogate)' where the cell's attack ran a stand-in (`bayes~l2-surrogate`)."""
    _, tilde, surrogate = attack.partition("~")
    return f" ({surrogate})" if tilde else ""


def _span(indices: range) -> str:
    """'images 3–7' or 'image 3'."""
    if len(indices) == 1:
        return f"image {indices.start}"
    return f"images {indices.start}–{indices.stop - 1}"


def _tuned_names(attack: str, space: dict, sweep: object) -> str:
    """'priors' or 'weight_start, weight_end swept, then lr, decay'."""
    grid = ", ".join(space)
    if sweep is None:
        return grid
    swept = f"{', '.join(sweep.names)} swept"
    return f"{swept}, then {grid}" if grid else swept


def _trained(scenario: AttackScenario) -> str:
    """' trained under each defense (Adam lr 0.001, batches of 32; steps 0, 20)' or ''."""
    training = scenario.model.training
    if training is None:
        return ""
    steps = ", ".join(str(s) for s in training.steps)
    return (
        f" trained under each defense (Adam lr {training.lr:g}, batches of"
        f" {training.batch_size}; steps {steps})"
    )
