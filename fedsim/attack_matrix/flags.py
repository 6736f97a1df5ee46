"""`fedsim attack` in flag mode: every attack against every defense on the chosen images."""

from __future__ import annotations

from pathlib import Path

import torch

from attacks.specs import parse_attack_spec
from fedsim.attack_matrix.cells import (
    CellResult,
    MatrixSettings,
    defended_batches,
    image_batches,
    run_cell,
)
from fedsim.attack_matrix.console import print_results
from fedsim.device import resolve_device
from fedsim.image_grid import save_image_grid


def run_matrix(
    settings: MatrixSettings, grid_path: Path | None = None, show: bool = True
) -> list[CellResult]:
    """Run every attack against every defense on the chosen images; print a table."""
    device = resolve_device(settings.device)
    attacks = [parse_attack_spec(text) for text in settings.attacks]
    info, images, labels = image_batches(settings)
    results: list[CellResult] = []
    grid_rows: list[tuple[str, torch.Tensor]] = [("original", images.flatten(0, 1))]
    for spec in settings.defenses:
        batches = defended_batches(settings, spec, info, images, labels, device)
        model = batches.targets[0].model
        for requested in attacks:
            attack = requested.resolve(batches.defense, model)
            result, recon = run_cell(settings, attack, batches)
            results.append(result)
            grid_rows.append((f"{attack.label} | {batches.defense.spec}", recon))
    if show:
        print_results(results)
    if grid_path is not None:
        save_image_grid(grid_path, grid_rows, max_columns=10)
    return results
