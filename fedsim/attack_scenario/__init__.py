"""Attack × defense matrices from a scenario file, each cell tuned on held-out images.

`fedsim attack SCENARIO` reads a TOML file (`scenarios/paper/matrix-*.toml`), applies
`--set key=value` overrides and validates it into `AttackScenario` (`config`). For each
defense the scored images become client updates exactly as in the flag mode
(`fedsim.attack_matrix`). An attack with a search space in `[tuning.space]` is first
tuned on updates made from the tuning images (same model, same defense, other noise
draws): every setting of the space is tried with the scenario's budget, scored by the
mean matched PSNR against the tuning images, and the best setting is then run on the
scored updates. Attacks without a space run as written (`runner`).

The run directory (`<output>/<name>-<YYYYmmdd-HHMMSS>`, or exactly `--out`) receives

    scenario.toml   the scenario with every default filled in (runs again as it is)
    results.json    data, machine, start, wall seconds, and per cell: scores per image,
                    the tuned setting and every tried setting with its tuning PSNR
    table.md        mean PSNR and mean SSIM, defenses × attacks, best per row in bold (`tables`)
    grid.png        the scored originals over every cell's reconstructions

results.json is rewritten after every cell (`"complete": false` until the last one).
"""

from __future__ import annotations

from fedsim.attack_scenario.config import AttackScenario, load_attack_scenario
from fedsim.attack_scenario.runner import run_attack_scenario, run_directory

__all__ = ["AttackScenario", "load_attack_scenario", "run_attack_scenario", "run_directory"]
