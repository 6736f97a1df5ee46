"""Which route computes the candidate updates: the fast one where a probe shows it exact."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from attacks.target import Protocol
from attacks.updates.candidates import UpdateFunction
from attacks.updates.fast import ActivationUpdates
from attacks.updates.per_sample import PerSampleClippedUpdates
from attacks.updates.vmap import VmapUpdates

Route = Literal["auto", "fast", "vmap"]


def build_updates(
    model: nn.Module,
    batch_size: int,
    bn_train_mode: bool,
    protocol: Protocol | None = None,
    unroll: bool = False,
    route: Route = "auto",
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    per_sample_clip: float | None = None,
) -> UpdateFunction:
    """The fastest update function that is exact for this model (`attacks.updates`).

    `per_sample_clip` C: each candidate's update is the mean of its per-sample gradients
    clipped to norm C (DP-SGD's clean update, `attacks.clipping`); the generic route is
    then `PerSampleClippedUpdates` (`attacks.updates.per_sample`).

    `auto` tries the fast route and keeps it only if, on a random probe of two candidates
    in float64, it matches the generic route to `PROBE_TOLERANCE` (guarding against layers
    that couple samples in ways the fast route cannot see). Unrolled FedAvg always takes
    the generic route.
    """
    unrolled = unroll and protocol is not None and protocol.kind == "fedavg"
    if per_sample_clip is not None:
        generic = PerSampleClippedUpdates(model, batch_size, per_sample_clip, protocol, unrolled)
    else:
        generic = VmapUpdates(model, batch_size, bn_train_mode, protocol, unroll=unrolled)
    if route == "vmap" or unrolled:
        return generic
    try:
        fast = ActivationUpdates(model, batch_size, bn_train_mode, per_sample_clip)
    except NotImplementedError:
        if route == "fast":
            raise
        return generic
    if route == "fast" or input_shape is None or num_classes is None:
        return fast
    if not _routes_agree(
        model, batch_size, bn_train_mode, input_shape, num_classes, per_sample_clip
    ):
        return generic
    return fast


PROBE_TOLERANCE = 1e-8
"""Largest difference, relative to the largest update entry, at which the routes agree.
The probe runs in float64 (in float32, train-mode batch norm over one image's few
pixels leaves the two routes 1e-2 apart in early layers), so that near-ties in max
pooling cannot route gradients differently and a layer that couples samples stands
out by orders of magnitude."""

PROBE_CLIP = 1e-4
"""The per-sample clip of the probe of clipped routes: below any gradient norm a random
input gives, so that the clip factors of every sample enter the comparison."""

_AGREEMENT: dict[tuple, bool] = {}
"""Probe results by architecture: whether the routes agree depends on the layers, not on
the weights, and a federation audits the same model round after round."""


def _architecture(model: nn.Module) -> tuple:
    modules = tuple((name, type(m).__qualname__, repr(m)) for name, m in model.named_modules())
    shapes = tuple((name, tuple(p.shape)) for name, p in model.named_parameters())
    return type(model).__qualname__, modules, shapes


def _routes_agree(
    model: nn.Module,
    batch_size: int,
    bn_train_mode: bool,
    input_shape: Sequence[int],
    num_classes: int,
    per_sample_clip: float | None = None,
) -> bool:
    key = (
        _architecture(model),
        batch_size,
        bn_train_mode,
        tuple(input_shape),
        num_classes,
        per_sample_clip is not None,
    )
    if key not in _AGREEMENT:
        _AGREEMENT[key] = _probe_routes(
            model, batch_size, bn_train_mode, input_shape, num_classes, per_sample_clip is not None
        )
    return _AGREEMENT[key]


def _probe_routes(
    model: nn.Module,
    batch_size: int,
    bn_train_mode: bool,
    input_shape: Sequence[int],
    num_classes: int,
    clipped: bool = False,
) -> bool:
    probe = copy.deepcopy(model).double().cpu()
    gen = torch.Generator().manual_seed(1234)
    x = torch.rand((2, batch_size, *input_shape), generator=gen, dtype=torch.float64)
    y = torch.randint(0, num_classes, (2, batch_size), generator=gen)
    try:
        if clipped:
            # a clip below the samples' gradient norms, so that it acts on every sample
            clip = PROBE_CLIP
            fast = ActivationUpdates(probe, batch_size, bn_train_mode, clip)(x, y).updates
            generic = PerSampleClippedUpdates(probe, batch_size, clip)(x, y).updates
        else:
            fast = ActivationUpdates(probe, batch_size, bn_train_mode)(x, y).updates
            generic = VmapUpdates(probe, batch_size, bn_train_mode)(x, y).updates
    except (RuntimeError, NotImplementedError):
        return False
    if any(u.shape != v.shape for u, v in zip(fast, generic, strict=True)):
        return False
    # One scale for all parameters: a parameter whose true gradient is zero (a convolution
    # bias before batch norm in train mode) holds only rounding noise in both routes.
    scale = max(max(v.abs().max().item() for v in generic), 1e-300)
    return all(
        (u - v).abs().max().item() <= PROBE_TOLERANCE * scale
        for u, v in zip(fast, generic, strict=True)
    )
