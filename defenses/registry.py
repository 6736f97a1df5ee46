"""Name → defense table, the spec parser, and the rows of `fedsim list defenses`.

Spec syntax: ``name`` or ``name:args``, where args are comma-separated
``key=value`` pairs or leading positional values in the order the defense lists
its parameters (``gaussian:0.1`` = ``gaussian:sigma=0.1``). Defenses are stacked
with ``|``, applied left to right: ``"ats:policy=21-13-3 | dpsgd:clip=1,sigma=0.5"``.
A scenario may give the same as a list of specs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from defenses.ats import ATS
from defenses.base import STAGES, Defense, Parameter
from defenses.composite import compose
from defenses.dpsgd import DPSGD
from defenses.errors import DefenseError
from defenses.identity import NoDefense
from defenses.noise import GaussianNoise, LaplacianNoise
from defenses.per_sample_noise import PerSampleGaussianNoise, PerSampleLaplacianNoise
from defenses.precode import Precode
from defenses.pruning import (
    Prune,
    PruneGaussian,
    PruneLaplacian,
    RandomPrune,
    RandomPruneGaussian,
    RandomPruneLaplacian,
)
from defenses.quantize import SignCompression, StochasticQuantization
from defenses.soteria import Soteria
from defenses.topk import TopKPrune

DEFENSES: dict[str, type[Defense]] = {
    cls.name: cls
    for cls in (
        NoDefense,
        GaussianNoise,
        LaplacianNoise,
        PerSampleGaussianNoise,
        PerSampleLaplacianNoise,
        Prune,
        PruneGaussian,
        PruneLaplacian,
        RandomPrune,
        RandomPruneGaussian,
        RandomPruneLaplacian,
        TopKPrune,
        DPSGD,
        Soteria,
        ATS,
        Precode,
        StochasticQuantization,
        SignCompression,
    )
}
UPDATE_STAGE = tuple(name for name, cls in DEFENSES.items() if cls.stages == frozenset({"update"}))
"""Defenses acting on the outgoing update alone (those usable as Flower mods)."""


def build_defense(name: str, **values: Any) -> Defense:
    """The defense `name` with parameter `values` (defaults for the rest)."""
    try:
        cls = DEFENSES[name]
    except KeyError:
        raise DefenseError(
            f"defense: unknown name {name!r}; choose one of {', '.join(DEFENSES)}"
        ) from None
    return cls(**values)


def _parse_one(text: str) -> Defense:
    name, _, args = text.strip().partition(":")
    name = name.strip()
    try:
        cls = DEFENSES[name]
    except KeyError:
        raise DefenseError(
            f"defense: unknown name {name!r}; choose one of {', '.join(DEFENSES)}"
        ) from None
    values: dict[str, Any] = {}
    positional_open = True
    for index, raw in enumerate(a.strip() for a in args.split(",")) if args.strip() else []:
        key, eq, value = raw.partition("=")
        if eq:
            positional_open = False
            values[key.strip()] = value.strip()
            continue
        if not positional_open:
            raise DefenseError(f"{name}: positional value {raw!r} after key=value arguments")
        if index >= len(cls.parameters):
            accepted = ", ".join(p.name for p in cls.parameters) or "none"
            raise DefenseError(
                f"{name}: too many values in {text.strip()!r}; parameters: {accepted}"
            )
        values[cls.parameters[index].name] = raw
    return cls(**values)


def parse_defense(spec: str | Sequence[str] | Defense) -> Defense:
    """A defense from a spec string, a list of specs (stacked in order), or a Defense."""
    if isinstance(spec, Defense):
        return spec
    texts = spec.split("|") if isinstance(spec, str) else [t for s in spec for t in s.split("|")]
    parts = [_parse_one(t) for t in texts if t.strip()]
    if not parts:
        raise DefenseError("defense: empty specification; use 'none' for no defense")
    return compose(parts)


@dataclass(frozen=True)
class DefenseInfo:
    """One row of `fedsim list defenses`."""

    name: str
    parameters: tuple[Parameter, ...]
    stages: tuple[str, ...]
    effect: str
    mechanism: str
    reference: str

    @property
    def parameters_text(self) -> str:
        """Each parameter as ``name=default (accepted values)``, '; '-separated; '—' if none."""
        return "; ".join(f"{p.name}={p.default} ({p.accepted()})" for p in self.parameters) or "—"

    def __iter__(self) -> Iterator[str]:
        """The display row of `fedsim list defenses`: name, parameters, effect, reference."""
        return iter((self.name, self.parameters_text, self.effect, self.reference))

    @property
    def defaults(self) -> str:
        """``sigma=0.1`` style, comma-separated; '' when it has no parameters."""
        return ",".join(f"{p.name}={p.default}" for p in self.parameters)


def list_defenses() -> list[DefenseInfo]:
    """Every registered defense with its parameters, stages, protection and mechanism."""
    rows = []
    for name, cls in DEFENSES.items():
        default = cls()
        rows.append(
            DefenseInfo(
                name=name,
                parameters=cls.parameters,
                stages=tuple(s for s in STAGES if s in cls.stages),
                effect=cls.effect,
                mechanism=default.mechanism_note,
                reference=cls.reference,
            )
        )
    return rows
