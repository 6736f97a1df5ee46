"""Name → model table; `fedsim list models` prints it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from attacks.lookup import lookup
from fedsim.data.info import DatasetInfo
from fedsim.errors import ConfigError
from fedsim.models.base import ImageClassifier, count_parameters
from fedsim.models.cnn import PaperCNN
from fedsim.models.convbig import ConvBig
from fedsim.models.convnet64 import ConvNet64
from fedsim.models.mlp import MLP
from fedsim.models.precode import Precode
from fedsim.models.resnet import ResNet18


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[[DatasetInfo], ImageClassifier]
    summary: str
    reference: str
    feature_rows: bool = False
    """Also takes feature rows (F,), not only images (C, H, W)."""


class ModelRow(NamedTuple):
    """One line of `fedsim list models`."""

    name: str
    parameters: int
    summary: str
    reference: str


def _builder(cls: type[ImageClassifier]) -> Callable[[DatasetInfo], ImageClassifier]:
    def build(info: DatasetInfo) -> ImageClassifier:
        return cls(info.input_shape, info.num_classes, info.mean, info.std)

    return build


MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in [
        ModelEntry(
            "cnn",
            _builder(PaperCNN),
            "conv32-pool-conv64-pool-dense100-dense (the paper's CNN)",
            "Balunović et al., Bayesian Framework for Gradient Leakage, ICLR 2022",
        ),
        ModelEntry(
            "convbig",
            _builder(ConvBig),
            "conv32-pool-conv1x1 64-pool-dense2000 (feature)-dense1000-dense (Soteria's ConvBig)",
            "Sun et al., Soteria: Provable Defense against Privacy Leakage in FL from "
            "Representation Perspective, CVPR 2021",
        ),
        ModelEntry(
            "convnet64",
            _builder(ConvNet64),
            "8 × conv3x3-BN-ReLU (64..256), 2 max pools, dense (~2.9M parameters on CIFAR-10)",
            "Geiping et al., Inverting Gradients, NeurIPS 2020; Gao et al., ATS, CVPR 2021",
        ),
        ModelEntry(
            "precode",
            _builder(Precode),
            "6 dense ReLU layers, variational bottleneck 256, dense 500, dense (PRECODE)",
            "Scheliga et al., PRECODE: A Generic Model Extension to Prevent Deep Gradient "
            "Leakage, WACV 2022",
        ),
        ModelEntry(
            "mlp",
            _builder(MLP),
            "flatten, 2 × dense200-ReLU, dense",
            "McMahan et al., Communication-Efficient Learning of Deep Networks from "
            "Decentralized Data (2NN), AISTATS 2017",
            feature_rows=True,
        ),
        ModelEntry(
            "resnet18",
            _builder(ResNet18),
            "CIFAR-style ResNet-18: 3x3 stem, BasicBlocks [2,2,2,2], 64..512, avgpool, dense",
            "He et al., Deep Residual Learning for Image Recognition, CVPR 2016",
        ),
    ]
}


def build_model(name: str, info: DatasetInfo) -> ImageClassifier:
    """Build model `name` for data set `info`, with its normalisation inside."""
    entry = lookup(MODELS, name, "model", ConfigError)
    if not info.is_image and not entry.feature_rows:
        takes = ", ".join(n for n, e in MODELS.items() if e.feature_rows)
        raise ConfigError(
            f"model: {name!r} needs images, and {info.name} has feature rows; choose {takes}"
        )
    return entry.build(info)


def model_rows(info: DatasetInfo) -> list[ModelRow]:
    """(name, parameters on `info`, summary, reference) for every model, in table order.

    Models are built on the meta device, so counting allocates no weights.
    """
    rows = []
    for entry in MODELS.values():
        with torch.device("meta"):
            model = entry.build(info)
        rows.append(ModelRow(entry.name, count_parameters(model), entry.summary, entry.reference))
    return rows
