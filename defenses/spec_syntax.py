"""How a spec is written, for a defense and for an attack alike: ``name[:argument,...]``.

The name comes first; after a colon, the arguments, separated by commas outside
brackets, braces and quotes (``cos:exclude=['a', 'b'],iterations=50``). An argument is
``key=value`` or a bare value: defenses take leading bare values in the order of their
parameters (``gaussian:0.1``), attacks refuse them. Values are TOML literals (numbers,
booleans, quoted strings, arrays, inline tables); a value that is no TOML literal is the
bare string as written (``policy=21-13-3``). Defenses stack with ``|``, split the same
way (`split_top_level`). This module reads the text only: which names and values exist
is for `defenses.registry.parse_defense` and `attacks.specs.parse_attack_spec` to say.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any


def literal(text: str) -> Any:
    """`text` as a TOML literal (number, boolean, quoted string, array, inline table), else
    the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """`text` split at `separator` outside brackets, braces and quotes; parts stripped,
    empty ones dropped."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


@dataclass(frozen=True)
class SpecArgument:
    """One argument as written: ``key=value`` (`key` set) or a bare value (`key` None)."""

    key: str | None
    text: str
    """The value as written, stripped."""

    @property
    def value(self) -> Any:
        """The value as a TOML literal, else the bare string (`literal`)."""
        return literal(self.text)


@dataclass(frozen=True)
class SpecText:
    """A spec split into its name and its arguments, in the order written."""

    name: str
    arguments: tuple[SpecArgument, ...]


def parse_spec_text(text: str) -> SpecText:
    """``name[:argument,...]`` split into the name and its arguments (nothing is checked)."""
    name, _, args = text.strip().partition(":")
    arguments = []
    for item in split_top_level(args):
        key, eq, value = item.partition("=")
        arguments.append(SpecArgument(key.strip() if eq else None, value.strip() if eq else item))
    return SpecText(name.strip(), tuple(arguments))
