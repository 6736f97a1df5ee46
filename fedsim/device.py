"""Which torch device a run uses."""

from __future__ import annotations

import torch

from fedsim.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA when present, else CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device: {name!r} requested but CUDA is not available here; use 'auto' or 'cpu'"
        )
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"device: unknown device {name!r}; use auto, cpu, cuda or cuda:N"
        ) from None
