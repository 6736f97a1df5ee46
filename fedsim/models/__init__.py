"""The networks of the paper, each carrying its input normalisation."""

from __future__ import annotations

from fedsim.models.base import ImageClassifier
from fedsim.models.registry import MODELS, build_model

__all__ = ["MODELS", "ImageClassifier", "build_model"]
