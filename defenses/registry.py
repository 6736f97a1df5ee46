"""The defense registry (name → class), the spec parser, and the rows of `fedsim list defenses`.

A defense registers itself with the `register_defense` class decorator, as Opacus'
validators do (``@register_module_validator``); the built-in ones do so in their own
modules, which importing `defenses` loads in the order of `BUILT_IN`. A defense
defined anywhere else registers when its module is imported, and from then on works by
name wherever a spec is read (`parse_defense`, scenario files, `fedsim attack
--defense`, `fedsim list defenses`, `AuditSetup.for_model(defense=...)`):

    from defenses import Defense, Parameter, register_defense

    @register_defense
    class MyDefense(Defense):
        name = "mine"
        ...

Spec syntax (`defenses.spec_syntax`, the same for attacks): ``name`` or ``name:args``,
where args are comma-separated ``key=value`` pairs (values are TOML literals) or leading
positional values in the order the defense lists its parameters (``gaussian:0.1`` =
``gaussian:sigma=0.1``); a string parameter takes the text as written (``ats:policy=7``).
Defenses are stacked with ``|``, applied left to right:
``"ats:policy=21-13-3 | dpsgd:clip=1,sigma=0.5"``. A scenario may give the same as a
list of specs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from defenses.base import STAGES, Defense, Parameter
from defenses.composite import compose
from defenses.errors import DefenseError
from defenses.spec_syntax import SpecArgument, parse_spec_text, split_top_level

BUILT_IN = (
    "identity",
    "noise",
    "per_sample_noise",
    "pruning",
    "topk",
    "dpsgd",
    "soteria",
    "ats",
    "precode",
    "quantize",
)
"""Modules of `defenses` whose defenses register on import, in the order they are listed."""

_REGISTERED: dict[str, type[Defense]] = {}
DEFENSES: Mapping[str, type[Defense]] = MappingProxyType(_REGISTERED)
"""Every registered defense by name, in the order registered (a read-only view that
grows as defenses register)."""

_RESERVED = frozenset(":|,= \t")
"""Characters of the spec syntax, which no defense name may hold."""

D = TypeVar("D", bound=type[Defense])


def register_defense(cls: D) -> D:
    """Register the Defense subclass `cls` under its `name` (a class decorator; returns
    `cls`). A name taken by another class is refused (DefenseError); registering a class
    again under its own name, or a redefinition of it (same module and class name, as
    when a notebook cell runs twice), replaces the entry."""
    if not (isinstance(cls, type) and issubclass(cls, Defense)):
        raise DefenseError(f"register_defense: {cls!r} is not a subclass of defenses.Defense")
    name = cls.name
    if not name or name == Defense.name or _RESERVED & set(name):
        raise DefenseError(
            f"register_defense: {cls.__qualname__} needs a class attribute `name` of its own, "
            f"without any of {' '.join(repr(c) for c in sorted(_RESERVED))}; got {name!r}"
        )
    unknown = set(cls.stages) - set(STAGES)
    if unknown:
        raise DefenseError(
            f"register_defense: {name}: unknown stage(s) {', '.join(sorted(unknown))}; "
            f"choose from {', '.join(STAGES)}"
        )
    taken = _REGISTERED.get(name)
    if taken is not None and _where(taken) != _where(cls):
        raise DefenseError(f"register_defense: name {name!r} is taken by {_where(taken)}")
    _REGISTERED[name] = cls
    return cls


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def defense_class(name: str) -> type[Defense]:
    """The registered defense `name`; DefenseError naming the registered ones otherwise."""
    try:
        return _REGISTERED[name]
    except KeyError:
        raise DefenseError(
            f"defense: unknown name {name!r}; choose one of {', '.join(_REGISTERED)}"
        ) from None


def update_stage_defenses() -> tuple[str, ...]:
    """Registered defenses acting on the outgoing update alone (those usable as Flower mods)."""
    return tuple(name for name, cls in _REGISTERED.items() if cls.stages == frozenset({"update"}))


def build_defense(name: str, **values: Any) -> Defense:
    """The defense `name` with parameter `values` (defaults for the rest)."""
    return defense_class(name)(**values)


def _parse_one(text: str) -> Defense:
    spec = parse_spec_text(text)
    cls = defense_class(spec.name)
    known = {p.name: p for p in cls.parameters}
    values: dict[str, Any] = {}
    positional_open = True
    for index, argument in enumerate(spec.arguments):
        if argument.key is not None:
            positional_open = False
            values[argument.key] = _argument_value(known.get(argument.key), argument)
            continue
        if not positional_open:
            raise DefenseError(
                f"{spec.name}: positional value {argument.text!r} after key=value arguments"
            )
        if index >= len(cls.parameters):
            accepted = ", ".join(p.name for p in cls.parameters) or "none"
            raise DefenseError(
                f"{spec.name}: too many values in {text.strip()!r}; parameters: {accepted}"
            )
        values[cls.parameters[index].name] = _argument_value(cls.parameters[index], argument)
    return cls(**values)


def _argument_value(parameter: Parameter | None, argument: SpecArgument) -> Any:
    """The argument's TOML literal; for a string parameter, the text as written unless the
    literal is a string (``ats:policy=7`` is the policy '7', not the number 7)."""
    value = argument.value
    if parameter is not None and parameter.kind is str and not isinstance(value, str):
        return argument.text
    return value


def parse_defense(spec: str | Sequence[str] | Defense) -> Defense:
    """A defense from a spec string, a list of specs (stacked in order), or a Defense."""
    if isinstance(spec, Defense):
        return spec
    texts = [
        t for s in ([spec] if isinstance(spec, str) else spec) for t in split_top_level(s, "|")
    ]
    parts = [_parse_one(t) for t in texts]
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
    for name, cls in _REGISTERED.items():
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
