"""The fields of a leakage line: what the scores, the reconstruction, the guess that
ignores the update and the update itself each add to it.

`seconds` in a record is the attack's own time on that client, or, where one call
reconstructed several clients at once (`reconstruct_many`), an equal share of that
call's time; `seconds_shared_by` says how many clients shared it (1: its own time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from attacks.local_training import approximations
from attacks.target import AttackTarget, Reconstruction
from fedsim.auditor.jobs import ClientCase
from fedsim.auditor.label_counts import label_counts_field
from fedsim.auditor.scoring import Scores
from fedsim.judgement import read_record
from fedsim.metrics.guesses import Guess

NO_SCORES: dict[str, Any] = {
    "psnr": None,
    "ssim": None,
    "recognisable": None,
    "mse": None,
    "categorical_accuracy": None,
    "label_accuracy": None,
}
"""The score fields of a record: images have PSNR and SSIM, feature rows MSE and the
share of categorical columns right; all None without ground truth."""


def score_fields(scores: Scores) -> dict[str, Any]:
    """The `NO_SCORES` fields filled in, and per row for feature rows."""
    fields: dict[str, Any] = {
        "psnr": scores.psnr,
        "ssim": scores.ssim,
        "recognisable": scores.recognisable,
        "mse": scores.mse,
        "categorical_accuracy": scores.categorical_accuracy,
        "label_accuracy": scores.label_accuracy,
    }
    if scores.mse_rows is not None:
        fields.update(mse_rows=scores.mse_rows, categorical_rows=scores.categorical_rows)
    return fields


def reconstruction_fields(recon: Reconstruction, shared_by: int) -> dict[str, Any]:
    """What the attack says of its own run: objective, iterations, time, status, priors
    and the likelihood it stated (or why none)."""
    objective = recon.objective.detach().flatten()
    return {
        "objective": float(objective[recon.best]) if objective.numel() else None,
        "iterations": int(recon.iterations),
        "seconds": float(recon.seconds),
        "seconds_shared_by": shared_by,
        "status": recon.status,
        "message": recon.message,
        "priors": dict(recon.priors),
        "priors_source": recon.priors_source,
        "mechanism": recon.likelihood,
        "mechanism_reason": None if recon.likelihood is not None else recon.likelihood_note,
    }


def trained_on_fields(seen: Scores) -> dict[str, Any]:
    """The scores against the originals after the defenses' batch stage (ATS)."""
    return {
        "psnr_trained_on": seen.psnr,
        "ssim_trained_on": seen.ssim,
        "recognisable_trained_on": seen.recognisable,
        "psnr_trained_on_images": seen.psnr_images,
        "ssim_trained_on_images": seen.ssim_images,
    }


def guess_fields(
    guess: Guess | None,
    originals: torch.Tensor | None,
    labels: torch.Tensor | None,
    suffix: str,
) -> dict[str, Any]:
    """The guess that ignores the update, scored against the same originals (record
    fields `ssim_guess<suffix>_images`…, and `guess`: what it was); {} without one."""
    if guess is None or originals is None or labels is None:
        return {}
    scores = guess.scores(originals, labels)
    named = {
        name.replace("_guess_", f"_guess{suffix}_") if suffix else name: values
        for name, values in scores.items()
    }
    return {"guess": guess.kind, **named}


def judged_shares(record: dict[str, Any]) -> None:
    """`recognisable` (and `recognisable_trained_on`): the share of images recovered as
    `fedsim.judgement` counts them, so the record and every report agree."""
    for reading in read_record(record):
        if reading.domain == "images" and reading.recovered:
            name = "recognisable_trained_on" if reading.series.trained_on else "recognisable"
            record[name] = sum(reading.recovered) / len(reading.recovered)


def update_facts(
    cases: Sequence[ClientCase], targets: Sequence[AttackTarget]
) -> dict[int, dict[str, Any]]:
    """Per case (by id): what its update gives away without an attack (`label_counts`)
    and where the attacks' model of its training is approximate (`approximations`)."""
    return {
        id(case): {
            "label_counts": label_counts_field(target, case.true_labels),
            "approximations": approximations(target),
        }
        for case, target in zip(cases, targets, strict=True)
    }
