"""Per-parameter weights of the data term, written by parameter name.

An adapted attack may trust some parameters' updates less than others, or not at all:
against Soteria, which perturbs only the defended layer's weight gradient, the
Bayesian framework paper's adaptive adversary drops that gradient from the matching
loss (Balunović et al., ICLR 2022, Section 6). Names are those of
`model.named_parameters()` (e.g. ``body.fc2.weight``) or shell-style patterns
(``body.fc2.*``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

from torch import nn

from attacks.errors import AttackError


def as_names(value: object, what: str = "exclude") -> tuple[str, ...]:
    """A tuple of parameter names or patterns from a string or a sequence of strings."""
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, Iterable) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise AttackError(f"{what}: expected a parameter name or a list of names, got {value!r}")


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Refuse weights that are not finite non-negative numbers; return them as floats."""
    if not isinstance(weights, Mapping):
        raise AttackError(f"parameter_weights: expected name → weight, got {weights!r}")
    out = {}
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise AttackError(
                f"parameter_weights: weight of {name!r} must be a finite number ≥ 0, got {w!r}"
            )
        out[str(name)] = float(w)
    return out


def resolve_parameter_weights(
    model: nn.Module, weights: Mapping[str, float], exclude: Iterable[str]
) -> list[float] | None:
    """One weight per parameter in `model.parameters()` order; None when all are 1.

    Each parameter takes the weight of the last pattern in `weights` that matches its
    name (1 if none does); a match in `exclude` sets it to 0. A pattern that matches no
    parameter, or weights that drop every parameter, raise AttackError.
    """
    names = [name for name, _ in model.named_parameters()]
    exclude = tuple(exclude)
    for pattern in (*weights, *exclude):
        if not any(fnmatchcase(n, pattern) for n in names):
            raise AttackError(
                f"parameter {pattern!r} matches no parameter of {type(model).__name__}; "
                f"its parameters: {', '.join(names)}"
            )
    resolved = []
    for n in names:
        w = 1.0
        for pattern, value in weights.items():
            if fnmatchcase(n, pattern):
                w = float(value)
        if any(fnmatchcase(n, pattern) for pattern in exclude):
            w = 0.0
        resolved.append(w)
    if not any(resolved):
        raise AttackError("parameter weights drop every parameter: nothing is left to match")
    return None if all(w == 1.0 for w in resolved) else resolved
