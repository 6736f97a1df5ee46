"""Is a train reply usable? One check for the aggregation filter and for the auditor.

A reply is usable when it carries no error, exactly one ArrayRecord with the keys,
shapes and dtypes of the arrays the server sent, only finite values, and (where the
strategy weights replies) a finite, positive weight. `reply_problem` returns the
first reason a reply is not usable, in one line, or None; it never raises, whatever
the reply holds. The auditor passes `dtypes=False`: what the inner strategy makes of a
reply in another dtype than it sent (FedAdam sends float64 weights to float32 clients)
is that strategy's business, and the attack reads the update in its model's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from flwr.app import ArrayRecord, Message


@dataclass(frozen=True)
class ArraySpec:
    shape: tuple[int, ...]
    dtype: str


def array_specs(arrays: ArrayRecord | Mapping[str, object]) -> dict[str, ArraySpec]:
    """Key → shape and dtype of what the server sent (an ArrayRecord or a torch state dict)."""
    specs = {}
    for key, value in arrays.items():
        shape = tuple(int(s) for s in value.shape)
        dtype = str(value.dtype).removeprefix("torch.")
        specs[key] = ArraySpec(shape, dtype)
    return specs


def reply_problem(
    message: Message,
    expected: Mapping[str, ArraySpec],
    weight_key: str | None = "num-examples",
    *,
    dtypes: bool = True,
) -> str | None:
    """Why `message` cannot be aggregated or attacked, or None when it can.

    `dtypes=False` accepts arrays of another dtype than sent (see the module note)."""
    try:
        return _problem(message, expected, weight_key, dtypes)
    except Exception as error:  # noqa: BLE001 - a reply must never crash the server
        return f"unreadable reply ({type(error).__name__}: {error})".splitlines()[0]


def _problem(
    message: Message, expected: Mapping[str, ArraySpec], weight_key: str | None, dtypes: bool
) -> str | None:
    if message.has_error():
        return f"the client failed: {message.error.reason}".splitlines()[0]
    records = list(message.content.array_records.values())
    if len(records) != 1:
        return f"expected one ArrayRecord, got {len(records)}"
    arrays = records[0]
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:3])}"] if missing else []) + (
            [f"unexpected {', '.join(extra[:3])}"] if extra else []
        )
        return f"arrays: {'; '.join(parts)}"
    for key, spec in expected.items():
        array = arrays[key]
        shape = tuple(int(s) for s in array.shape)
        if shape != spec.shape:
            return f"arrays[{key}]: shape {shape} where the model has {spec.shape}"
        values = array.numpy()
        if values.shape != spec.shape:
            return f"arrays[{key}]: data of shape {values.shape} where the model has {spec.shape}"
        dtype = str(values.dtype)
        if dtypes and spec.dtype and _comparable(spec.dtype) != _comparable(dtype):
            return f"arrays[{key}]: dtype {dtype} where the model has {spec.dtype}"
        if values.dtype.kind in "fc" and not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).sum())
            return f"arrays[{key}]: {bad} NaN or infinite value{'s' if bad > 1 else ''}"
    if weight_key is not None:
        metrics = list(message.content.metric_records.values())
        weight = metrics[0].get(weight_key) if len(metrics) == 1 else None
        if not isinstance(weight, int | float) or not math.isfinite(weight) or weight <= 0:
            return f"metrics: {weight_key} must be a finite positive number, got {weight!r}"
    return None


def _comparable(dtype: str) -> str:
    """numpy and torch spell dtypes alike except for a few aliases."""
    return {"float": "float32", "double": "float64", "long": "int64", "int": "int32"}.get(
        dtype, dtype
    )
