"""Data the server holds, read for proxy audits: each input as the model receives it,
the same input in [0, 1] pixel space for scoring, and its label.

`proxy_data` (`LeakageAuditor.for_model`) may be

- a fedsim data set name (`fedsim.data.DATASETS`: "cifar10", "mnist-sample", …): its
  test split, the held-out data a server evaluates on;
- arrays `(inputs, labels)`, numpy or torch;
- a torch `Dataset` (or a Hugging Face `datasets` split, or a `DataLoader`, whose
  dataset is read) whose items are `(input, label)` pairs, or dicts as Flower's
  flwr-datasets loaders give them (`{"img": …, "label": …}`; also `image`, `x` and
  `y`, …): the keys used are said, and items with several candidates are refused.

Which space an input is in follows from its type, so that a server's own test loader
can be passed as it is. A float tensor or array is taken as the model receives it —
after the app's transform, e.g. `Normalize((0.5,) * 3, (0.5,) * 3)` gives [−1, 1],
which the app declares as `domain=ImageDomain(low=-1.0, high=1.0)` — and must lie in
the domain's box. Integer arrays (uint8) and PIL images are raw pixels 0–255, scaled to
[0, 1] and mapped linearly into the box. A fedsim data set's images are in [0, 1] and
mapped the same way. Feature rows are taken as they are. Images may come
channels-last ((H, W, C), as PIL and numpy hold them) or without a channel axis for
one-channel data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from attacks.domain import ImageDomain, InputDomain
from fedsim.errors import ConfigError

INPUT_KEYS = ("img", "image", "x", "pixel_values", "input", "inputs", "features")
"""Keys of a dict item that may hold its input (flwr-datasets: `img`, `image`)."""
LABEL_KEYS = ("label", "labels", "y", "target", "fine_label", "coarse_label")
"""Keys of a dict item that may hold its label."""

_BOX_SLACK = 1e-4


@dataclass(frozen=True)
class ProxyData:
    """Proxy examples: `inputs` as the model receives them, `pixels` in [0, 1] (images;
    feature rows: the inputs again) for scoring, `labels` (N,) int64, and where they came
    from (`source`, said in the cost plan)."""

    inputs: torch.Tensor
    pixels: torch.Tensor
    labels: torch.Tensor
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


Space = Literal["bytes", "unit", "model"]
"""Where read inputs lie: raw pixels 0–255, pixels in [0, 1], or as the model receives them."""


def read_proxy_data(
    data: Any,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    domain: InputDomain,
    limit: int,
) -> ProxyData:
    """At most `limit` examples of `data` (module note); ConfigError naming `proxy_data`
    where they cannot be read or do not fit the declared shape, classes and domain."""
    if isinstance(data, torch.utils.data.DataLoader):
        data = data.dataset  # its items, not its batches
    if isinstance(data, str):
        inputs, labels, source = _named(data, limit)
        space: Space = "unit" if inputs.ndim > 2 else "model"
    elif isinstance(data, tuple | list) and len(data) == 2:
        inputs, labels = _tensor(data[0])[:limit], _labels(data[1], limit)
        source = f"arrays of {len(labels)} examples"
        space = "model" if torch.is_floating_point(inputs) else "bytes"
    elif _map_style(data):
        inputs, labels, source = _dataset(data, limit)
        space = "model" if torch.is_floating_point(inputs) else "bytes"
    else:
        raise ConfigError(
            "proxy_data: expected a fedsim data set name, arrays (inputs, labels) or a torch "
            f"Dataset of (input, label) pairs or dicts, got {type(data).__name__}"
        )
    inputs = _shaped(inputs.to(torch.float32), tuple(int(s) for s in input_shape), domain)
    _check_labels(inputs, labels, num_classes)
    if not isinstance(domain, ImageDomain):
        return ProxyData(inputs, inputs, labels, source)
    if space == "model":
        _check_box(inputs, domain)
        inputs = inputs.clamp(domain.low, domain.high)
        return ProxyData(inputs, domain.to_unit(inputs), labels, source)
    pixels = (inputs / 255.0 if space == "bytes" else inputs).clamp(0, 1)
    return ProxyData(_into_box(pixels, domain), pixels, labels, source)


def _map_style(data: Any) -> bool:
    """A torch Dataset, or anything a DataLoader takes as one (a Hugging Face `datasets`
    split, as flwr-datasets gives it): items by index, and a length."""
    if isinstance(data, torch.utils.data.Dataset):
        return True
    arrays = (str, bytes, np.ndarray, torch.Tensor, Mapping)
    return (
        hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, arrays)
    )


def _check_labels(inputs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
    if len(inputs) != len(labels):
        raise ConfigError(f"proxy_data: {len(inputs)} inputs but {len(labels)} labels")
    if len(labels) == 0:
        raise ConfigError("proxy_data: holds no examples")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ConfigError(
            f"proxy_data: labels must lie in [0, {num_classes}) for num_classes={num_classes},"
            f" found {int(labels.min())}..{int(labels.max())}"
        )


def _named(name: str, limit: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """A fedsim data set's test split (its images are in [0, 1])."""
    from fedsim.data import load_dataset

    held = load_dataset(name, "test")
    inputs = held.images[:limit].float()
    return inputs, held.labels[:limit].long(), f"{name} test split, {len(inputs)} examples"


def _tensor(value: Any) -> torch.Tensor:
    """A tensor, array, PIL image (uint8, (H, W[, C])) or number as a CPU tensor."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        return torch.from_numpy(np.array(value))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"proxy_data: an input is not an array ({error})") from None


def _labels(labels: Any, limit: int) -> torch.Tensor:
    found = _tensor(labels)[:limit]
    if found.ndim != 1 or torch.is_floating_point(found):
        raise ConfigError(
            f"proxy_data: labels must be integers, one per input, got {found.dtype} of shape "
            f"{tuple(found.shape)}"
        )
    return found.long()


def _dataset(data: Any, limit: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Items of a Dataset: pairs, or dicts whose keys are found once, from the first item."""
    count = min(len(data), limit)
    if count == 0:
        raise ConfigError("proxy_data: the Dataset holds no items")
    first = data[0]
    keys = _item_keys(first) if isinstance(first, Mapping) else None
    inputs, labels = [], []
    for index in range(count):
        item = data[index]
        if keys is not None:
            x, y = item[keys[0]], item[keys[1]]
        elif isinstance(item, tuple | list) and len(item) == 2:
            x, y = item
        else:
            raise ConfigError(
                "proxy_data: Dataset items must be (input, label) pairs or dicts, got "
                f"{type(item).__name__}"
            )
        inputs.append(_tensor(x))
        labels.append(int(_tensor(y).reshape(-1)[0]))
    how = f"items' {keys[0]!r} and {keys[1]!r}" if keys else "(input, label) items"
    return torch.stack(inputs), torch.tensor(labels), f"Dataset {how}, {count} examples"


def _item_keys(item: Mapping[str, Any]) -> tuple[str, str]:
    """(input key, label key) of a dict item; ConfigError where either is missing or
    ambiguous."""
    found = []
    for kind, known in (("input", INPUT_KEYS), ("label", LABEL_KEYS)):
        present = [k for k in known if k in item]
        if len(present) != 1:
            problem = "none of" if not present else "several of"
            raise ConfigError(
                f"proxy_data: Dataset items hold {problem} the {kind} keys "
                f"{', '.join(map(repr, present or known))} (item keys: "
                f"{', '.join(map(repr, item))}); give a Dataset of (input, label) pairs or "
                "arrays (inputs, labels)"
            )
        found.append(present[0])
    return found[0], found[1]


def _shaped(inputs: torch.Tensor, shape: tuple[int, ...], domain: InputDomain) -> torch.Tensor:
    """(N, *shape): as given, without the channel axis of one-channel images, or
    channels-last."""
    if tuple(inputs.shape[1:]) == shape:
        return inputs.contiguous()
    if isinstance(domain, ImageDomain) and len(shape) == 3:
        channels, height, width = shape
        if channels == 1 and tuple(inputs.shape[1:]) == (height, width):
            return inputs.unsqueeze(1).contiguous()
        if tuple(inputs.shape[1:]) == (height, width, channels):
            return inputs.permute(0, 3, 1, 2).contiguous()
    raise ConfigError(
        f"proxy_data: inputs of shape {tuple(inputs.shape[1:])} do not fit input_shape={shape}"
    )


def _check_box(inputs: torch.Tensor, domain: ImageDomain) -> None:
    low, high = float(inputs.min()), float(inputs.max())
    if low < domain.low - _BOX_SLACK or high > domain.high + _BOX_SLACK:
        box = f"ImageDomain(low={math.floor(low):.1f}, high={math.ceil(high):.1f})"
        raise ConfigError(
            f"proxy_data: float inputs (taken as the model receives them) lie in "
            f"[{low:.3g}, {high:.3g}], outside the declared domain's box [{domain.low:g}, "
            f"{domain.high:g}]; declare the box your transform gives (domain={box} holds"
            " these), or pass uint8 pixels"
        )


def _into_box(pixels: torch.Tensor, domain: ImageDomain) -> torch.Tensor:
    """[0, 1] pixels as the model receives them: mapped linearly into the domain's box."""
    return domain.low + (domain.high - domain.low) * pixels
