"""Image and label metrics for scoring reconstructions, each as a function and a class."""

from __future__ import annotations

from fedsim.metrics.label_accuracy import LabelAccuracy, label_accuracy
from fedsim.metrics.matching import Matching, match_by_psnr, pairwise_psnr
from fedsim.metrics.mse import MSE, mse
from fedsim.metrics.psnr import PSNR, PSNR_CAP_DB, psnr
from fedsim.metrics.ssim import SSIM, ssim

__all__ = [
    "MSE",
    "PSNR",
    "PSNR_CAP_DB",
    "SSIM",
    "LabelAccuracy",
    "Matching",
    "label_accuracy",
    "match_by_psnr",
    "mse",
    "pairwise_psnr",
    "psnr",
    "ssim",
]
