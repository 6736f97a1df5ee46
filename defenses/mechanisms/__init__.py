"""Likelihoods p(observed | candidate) induced by the defenses."""

from __future__ import annotations

from defenses.mechanisms.base import Mechanism, NoiseKind, Update
from defenses.mechanisms.clipped import ClippedGaussianMechanism, ClippingMechanism
from defenses.mechanisms.masked import MaskedMechanism, PruneNoiseMixtureMechanism
from defenses.mechanisms.noise import GaussianMechanism, LaplacianMechanism
from defenses.mechanisms.quantized import SignMechanism, StochasticQuantizationMechanism

__all__ = [
    "ClippedGaussianMechanism",
    "ClippingMechanism",
    "GaussianMechanism",
    "LaplacianMechanism",
    "MaskedMechanism",
    "Mechanism",
    "NoiseKind",
    "PruneNoiseMixtureMechanism",
    "SignMechanism",
    "StochasticQuantizationMechanism",
    "Update",
]
