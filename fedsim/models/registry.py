"""Name → model table; `fedsim list models` prints it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fedsim.data.info import DatasetInfo
from fedsim.errors import ConfigError
from fedsim.models.base import ImageClassifier
from fedsim.models.cnn import PaperCNN


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[[DatasetInfo], ImageClassifier]
    summary: str
    reference: str


def _paper_cnn(info: DatasetInfo) -> ImageClassifier:
    return PaperCNN(info.input_shape, info.num_classes, info.mean, info.std)


MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in [
        ModelEntry(
            "cnn",
            _paper_cnn,
            "conv32-pool-conv64-pool-dense100-dense (the paper's CNN)",
            "Balunović et al., Bayesian Framework for Gradient Leakage, ICLR 2022",
        ),
    ]
}


def build_model(name: str, info: DatasetInfo) -> ImageClassifier:
    """Build model `name` for data set `info`, with its normalisation inside."""
    try:
        entry = MODELS[name]
    except KeyError:
        raise ConfigError(f"model: unknown name {name!r}; choose one of {', '.join(sorted(MODELS))}") from None
    return entry.build(info)
