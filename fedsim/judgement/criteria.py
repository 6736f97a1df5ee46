"""What counts as recovered: one rule for every image and feature row fedsim judges.

An **image** is recovered when its reconstruction is recognisable (SSIM at least
`RECOGNISABLE_SSIM` against the private image it was matched to,
`fedsim.metrics.recognisable`) *and* beats the guess that ignores the update: the
guess's own SSIM against the same private image, recorded beside it
(`fedsim.judgement.guesses`). A grey tile that a flat grey image matches as well shows
nothing the update gave away, however high its SSIM.

A **feature row** is recovered when its continuous columns are closer to the private
row than the guess from the feature statistics (the column means) comes, by at least
the factor `ROW_MSE_FACTOR`, and — where the row has categorical columns — it gets more
of them right than the guess of each column's most common category, and at least
`ROW_CATEGORICAL` of them. Calibrated on the packaged Adult sample
(`python scripts/row_criterion.py RUN`, EXPERIMENTS.md, "When a feature row counts as
recovered"): a real row of another person, matched to a private batch as an attack's
output is, passes for about 1 % of private rows; the Bayes reconstructions of the
tabular scenario pass for 88 %.

Records of an older fedsim carry no guess: their images are judged by the threshold
alone, and their rows by the threshold against the expected guess error (`ROW_MSE_UNKNOWN`).
"""

from __future__ import annotations

from fedsim.metrics.recognisable import RECOGNISABLE_SSIM

ROW_MSE_FACTOR = 0.5
"""A recovered row's MSE over its continuous columns is at most this share of the
column-mean guess's MSE on the same row."""

ROW_CATEGORICAL = 0.875
"""A recovered row has at least this share of its categorical columns right (7 of 8)."""

ROW_MSE_UNKNOWN = 0.5
"""Without a recorded guess: the largest MSE of a recovered row, in standardised units
(where the column-mean guess errs by 1.0 on average)."""

IMAGE_RULE = f"SSIM ≥ {RECOGNISABLE_SSIM} and above the guess that ignores the update"
ROW_RULE = (
    f"continuous columns within {ROW_MSE_FACTOR:g}× the column-mean guess's error, and at"
    f" least {ROW_CATEGORICAL:.1%} of the categorical columns right, more than the"
    " most-common-category guess"
)


def image_recovered(ssim: float, guess_ssim: float | None = None) -> bool:
    """One image: recognisable, and closer in structure than the guess (where recorded)."""
    if ssim < RECOGNISABLE_SSIM:
        return False
    return guess_ssim is None or ssim > guess_ssim


def row_recovered(
    mse: float,
    categorical: float | None = None,
    guess_mse: float | None = None,
    guess_categorical: float | None = None,
    factor: float = ROW_MSE_FACTOR,
) -> bool:
    """One feature row: continuous columns well inside the guess's error, and (with
    categorical columns) nearly all of them right, more than the guess."""
    limit = ROW_MSE_UNKNOWN if guess_mse is None else factor * guess_mse
    if not mse <= limit:
        return False
    if categorical is None:
        return True
    beats = guess_categorical is None or categorical > guess_categorical
    return beats and categorical >= ROW_CATEGORICAL
