"""Attack × defense matrices on real images, without a federation (`fedsim attack`).

Flag mode (`fedsim attack --attack … --defense …`, `flags`) and scenario files
(`fedsim attack SCENARIO`, `runner`) share the cells: every image batch becomes the
update a client would send, every attack reconstructs all batches of a defense in one
batched call, and reconstructions are scored against the originals after optimal
matching.

`fedsim attack SCENARIO` reads a TOML file (`scenarios/paper/matrix-*.toml`), applies
`--set key=value` overrides and validates it into `AttackScenario` (`config`). For each
defense the scored images become client updates exactly as in the flag mode
(`cells`). An attack with a search space in `[tuning.space]` is first
tuned on updates made from the tuning images (same model, same defense, other noise
draws): every setting of the space (or `tuning.samples` of them) is tried with the
scenario's budget, scored by the mean matched PSNR against the tuning images, and the
best setting is then run on the scored updates. `[tuning.sweep]` gives an attack the
Bayesian framework paper's weight sweep before its space (`attacks.tuning.tune`).
Attacks without either run as written (`runner`). With `[model.training]` every
defense's cells are run at each of the model's states as trained under that defense
(`trained_states`), one row per state and defense.

The run directory (`<output>/<name>-<YYYYmmdd-HHMMSS>`, or exactly `--out`) receives

    scenario.toml   the scenario with every default filled in (runs again as it is)
    results.json    data, machine, start, wall seconds, and per cell: scores per image,
                    the tuned setting and every tried setting with its tuning PSNR
    table.md        mean PSNR and mean SSIM, defenses × attacks, best per row in bold (`tables`)
    grid.png        the scored originals over every cell's reconstructions

results.json is rewritten after every cell (`"complete": false` until the last one).

Attack specs as users write them (``bayes:lr=0.1``, ``adapted``) are `attacks.specs`.
Modules, each importing only those above it:

    trained_states  the model trained under each defense, its states kept on disk
    cells     settings, defended batches, one attacked and scored cell
    console   the terminal table
    flags     flag mode
    config    the scenario file's schema and loading
    results   one cell of a scenario run, with what tuning chose
    tables    table.md
    runner    a scenario run: tuning, the run directory, results.json

Nothing is imported here, so importing one module does not load the others.
"""
