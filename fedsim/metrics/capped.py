"""Summaries of capped PSNR: where images hit the cap, the mean alone misleads.

Every PSNR is capped (`PSNR_CAP_DB`, an exact reconstruction), so a mean over images
some of which are exact is a mean of a cap: 80 dB may be four exact images and one at
20 dB. Wherever the cap is hit, tables show the median and the fraction of exact
reconstructions beside the mean.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from fedsim.metrics.psnr import PSNR_CAP_DB


@dataclass(frozen=True)
class CappedPSNR:
    """Mean and median (dB) of capped PSNR values, and how many are at the cap."""

    mean: float
    median: float
    exact: int
    count: int

    @property
    def exact_fraction(self) -> float:
        return self.exact / self.count

    def text(self, digits: int = 2) -> str:
        """``mean``, or ``mean (median m, k/n exact)`` where any value is at the cap."""
        mean = f"{self.mean:.{digits}f}"
        if not self.exact:
            return mean
        return f"{mean} (median {self.median:.{digits}f}, {self.exact}/{self.count} exact)"


def summarize_psnr(values: Sequence[float], cap: float = PSNR_CAP_DB) -> CappedPSNR:
    """`values` capped at `cap` (again, in case they were not), summarised."""
    if not values:
        raise ValueError("summarize_psnr: no values")
    capped = [min(float(v), cap) for v in values]
    return CappedPSNR(
        mean=statistics.fmean(capped),
        median=statistics.median(capped),
        exact=sum(v >= cap for v in capped),
        count=len(capped),
    )
