"""Name lookups with one error message.

Every table looked up by name (attacks, objectives, priors here; models, data sets and
attack names in `fedsim`) refuses an unknown name the same way, listing the known ones:
``<kind>: unknown name 'x'; choose one of a, b, c``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from attacks.errors import AttackError

T = TypeVar("T")


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
