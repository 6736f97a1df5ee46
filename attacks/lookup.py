"""Name lookups with one error message, and the open registries built on them.

Every table looked up by name (attacks, objectives, priors here; models, data sets and
attack names in `fedsim`) refuses an unknown name the same way, listing the known ones:
``<kind>: unknown name 'x'; choose one of a, b, c``. A `Registry` is such a table that
classes join with a class decorator, the way `defenses.register_defense` registers
defenses; the built-in entries register in their own modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Generic, TypeVar

from attacks.errors import AttackError

T = TypeVar("T")
C = TypeVar("C", bound=type)

RESERVED = frozenset(":|,= \t")
"""Characters of the spec syntax (``name:key=value,…``, stacks with ``|``), which no
registered name may hold."""


def unknown_name(kind: str, name: str, choices: Iterable[str], *, lead: bool = True) -> str:
    """``<kind>: unknown name 'x'; choose one of a, b`` (choices in the order given), or,
    with `lead` False (a message that follows a field name), ``unknown <kind> 'x'; …``."""
    listed = ", ".join(choices)
    if lead:
        return f"{kind}: unknown name {name!r}; choose one of {listed}"
    return f"unknown {kind} {name!r}; choose one of {listed}"


def lookup(
    table: Mapping[str, T],
    name: str,
    kind: str,
    error: Callable[[str], Exception] = AttackError,
) -> T:
    """`table[name]`; otherwise `error` with the `unknown_name` message, names sorted."""
    try:
        return table[name]
    except KeyError:
        raise error(unknown_name(kind, name, sorted(table))) from None


class Registry(Generic[C]):
    """Name → class, open to classes defined anywhere (`register` is a class decorator).

    A class joins under its class attribute `name`, which must be its own (not a base
    class's default `unnamed`) and free of `RESERVED` characters. A name taken by another
    class is refused; registering the same class again, or a redefinition of it (same
    module and qualified name, as when a notebook cell runs twice), replaces the entry.
    `entries` is a read-only view, in the order registered, that grows as classes join.
    """

    def __init__(self, kind: str, accepts: Callable[[type], bool], requirement: str) -> None:
        self.kind = kind
        self._accepts = accepts
        self._requirement = requirement
        self._entries: dict[str, C] = {}
        self.entries: Mapping[str, C] = MappingProxyType(self._entries)

    def register(self, cls: C) -> C:
        """Register `cls` under its `name` and return it (usable as a decorator)."""
        where = f"register_{self.kind}"
        if not (isinstance(cls, type) and self._accepts(cls)):
            raise AttackError(f"{where}: {cls!r} is not {self._requirement}")
        name = cls.__dict__.get("name")
        if not isinstance(name, str) or not name or RESERVED & set(name):
            raise AttackError(
                f"{where}: {cls.__qualname__} needs a class attribute `name` of its own, "
                f"without any of {' '.join(repr(c) for c in sorted(RESERVED))}; got {name!r}"
            )
        taken = self._entries.get(name)
        if taken is not None and _where(taken) != _where(cls):
            raise AttackError(f"{where}: name {name!r} is taken by {_where(taken)}")
        self._entries[name] = cls
        return cls

    def get(self, name: str) -> C:
        """The class registered as `name`; AttackError listing the registered names otherwise."""
        return lookup(self._entries, name, self.kind)

    def check(self, name: str) -> None:
        """Refuse an unknown name, listing the registered ones."""
        self.get(name)


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
