"""The networks of the paper, each carrying its input normalisation."""

from __future__ import annotations

from fedsim.models.base import ImageClassifier, count_parameters
from fedsim.models.registry import MODELS, ModelRow, build_model, model_rows

__all__ = ["MODELS", "ImageClassifier", "ModelRow", "build_model", "count_parameters", "model_rows"]
