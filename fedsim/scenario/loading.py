"""Read a scenario file, apply `--set key=value` overrides, validate, and write it back.

Every failure is a `ConfigError` with one line that names the field (dotted, with list
indices: `attacks.0.name`), so the CLI can print it and exit with status 2.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ValidationError

from fedsim.errors import ConfigError
from fedsim.scenario.acts import (
    acts_in,
    given_fields,
    ignored_settings,
    inert_fields,
    one_line,
    refuse_ignored,
    remove_fields,
)
from fedsim.scenario.config import Scenario
from fedsim.scenario.names import ATTACK_CHECK

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.+-]+")
_FIELD_PREFIX = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*): ")


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.0.c=value` → (['a', 'b', '0', 'c'], value), the value read as a TOML value.

    A value that is not valid TOML (`mnist`, `gaussian:sigma=0.1`) is taken as a string.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"--set {text!r}: expected KEY=VALUE with a dotted KEY such as protocol.lr=0.05"
        )
    raw = raw.strip()
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def apply_override(raw: dict[str, Any], path: list[str], value: Any) -> None:
    """Set `value` at `path` inside the raw TOML tree, creating tables on the way.

    Integer segments index lists (`attacks.1.name`); unknown keys are left for
    validation to refuse with the field's name.
    """
    node: Any = raw
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        where = ".".join(path[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"--set {'.'.join(path)}: {where} is not an index of a list of {len(node)}"
                )
            index = int(part)
            if last:
                node[index] = value
            else:
                node = node[index]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {'.'.join(path[:depth])} is not a table")
        if last:
            node[part] = value
        else:
            node = node.setdefault(part, {})


def format_validation_error(error: ValidationError) -> str:
    """The first problem as one line: `dotted.field: message`."""
    first = error.errors()[0]
    loc = [_location_part(part) for part in first["loc"] if not _is_union_tag(part)]
    message = str(first["msg"]).removeprefix("Value error, ")
    match = _FIELD_PREFIX.match(message)
    if match:
        loc.append(match.group(1))
        message = message[match.end() :]
    if first["type"] == "extra_forbidden":
        message = "unknown key (not a scenario setting)"
    elif "input" in first and first["type"] not in ("missing", "value_error"):
        message = f"{message} (got {first['input']!r})"
    field = ".".join(loc) or "scenario"
    more = len(error.errors()) - 1
    suffix = (
        f" [and {more} more problem{'s' if more > 1 else ''}]"
        if more and not _same_field(error)
        else ""
    )
    return f"{field}: {message}{suffix}"


def _location_part(part: object) -> str:
    """A key as written in the file, quoted when it is not a plain name (keeps the line single)."""
    text = str(part)
    return text if _PLAIN_KEY.fullmatch(text) else json.dumps(text)


def _is_union_tag(part: object) -> bool:
    """Pydantic adds the tried type of a union member to the location; it names no field."""
    return isinstance(part, str) and (
        part in ("int", "float", "str", "bool", "list[int]")
        or "[" in part
        or part.startswith("constrained-")
        or part.startswith("function-")
    )


def _same_field(error: ValidationError) -> bool:
    """True when every problem is about one field (the members of one union)."""
    locs = {tuple(p for p in e["loc"] if not _is_union_tag(p)) for e in error.errors()}
    return len(locs) == 1


def validate_scenario(raw: Mapping[str, Any], *, registered_attacks: bool = False) -> Scenario:
    """Validate a raw TOML tree into a `Scenario`; ConfigError names the first bad field.

    `registered_attacks`: attack names and options must be in the `attacks` registry
    (set for scenario files; code that passes its own attack objects leaves it off).
    """
    try:
        return Scenario.model_validate(dict(raw), context={ATTACK_CHECK: registered_attacks})
    except ValidationError as error:
        raise ConfigError(f"scenario: {format_validation_error(error)}") from None


def read_scenario_file(path: str | Path) -> dict[str, Any]:
    """The raw TOML tree of a scenario file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"scenario: file {str(file)!r} not found") from None
    except OSError as error:
        raise ConfigError(f"scenario: cannot read {str(file)!r} ({error.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"scenario {file.name}: invalid TOML ({error})") from None


def read_with_overrides(path: str | Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The raw TOML tree of a scenario file with `key=value` overrides applied in order."""
    raw = read_scenario_file(path)
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(raw, keys, value)
    return raw


def load_scenario(
    path: str | Path, overrides: Iterable[str] = (), soft: Iterable[str] = ()
) -> Scenario:
    """Read, override (`key=value` strings, applied in order) and validate a scenario; a
    setting given where it would do nothing is refused (`fedsim.scenario.acts`).

    `soft` overrides (the command line's `--data-root`, `--download`, which every command
    takes) are applied only where they act: a data set packaged with fedsim reads no files.
    """
    raw = read_with_overrides(path, overrides)
    scenario = refuse_ignored(validate_scenario(raw, registered_attacks=True))
    return apply_soft(raw, scenario, soft)


def apply_soft(raw: dict[str, Any], scenario: Scenario, soft: Iterable[str]) -> Scenario:
    """`scenario` (validated from `raw`) with the `soft` overrides that act in it applied."""
    applied = False
    for text in soft:
        keys, value = parse_override(text)
        if acts_in(scenario, ".".join(keys)):
            apply_override(raw, keys, value)
            applied = True
    return validate_scenario(raw, registered_attacks=True) if applied else scenario


def scenario_to_toml(
    scenario: Scenario, header: Mapping[str, Any] | None = None, *, acting: bool = False
) -> str:
    """The resolved scenario (every default filled in) as TOML; `header` goes first as `[run]`.

    `acting`: only the settings that act in the scenario's modes (a run directory's
    `scenario.toml`: it says what ran, and runs again as a scenario file)."""
    tree: dict[str, Any] = {}
    if header:
        tree["run"] = dict(header)
    dumped = scenario.model_dump(mode="json", exclude_none=True)
    if acting:
        remove_fields(dumped, inert_fields(scenario))
        dumped = _without_empty_tables(dumped)
    tree.update(dumped)
    return tomli_w.dumps(tree)


def _without_empty_tables(tree: dict[str, Any]) -> dict[str, Any]:
    """`tree` without the tables that removing fields left empty."""
    kept = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            value = _without_empty_tables(value)
            if not value:
                continue
        kept[key] = value
    return kept


def settle_stored(raw: dict[str, Any], changed: Iterable[str] = ()) -> tuple[Scenario, list[str]]:
    """A stored scenario tree (a run's `scenario.toml`, every field given), with the
    dotted settings `changed` by the user: a setting in or under `changed` that does
    nothing is refused; a stored one that does nothing (the changes left it without
    effect) and differs from its default is removed from `raw`. The scenario, and why
    each removed setting did nothing."""
    scenario = validate_scenario(raw, registered_attacks=True)
    changed = list(changed)
    differs = set(given_fields(scenario, explicit=False))
    given = [p for p in given_fields(scenario) if p in differs or _under_any(p, changed)]
    ignored = ignored_settings(scenario, given)
    refused = [(p, why) for p, why in ignored if _under_any(p, changed)]
    if refused:
        raise ConfigError(f"scenario: {one_line(refused)}")
    if ignored:
        remove_fields(raw, [p for p, _ in ignored])
        scenario = validate_scenario(raw, registered_attacks=True)
    return scenario, [why for _, why in ignored]


def _under_any(path: str, settings: list[str]) -> bool:
    """Whether `path` is one of `settings` or lies inside one of those tables."""
    return any(path == s or path.startswith(f"{s}.") for s in settings)


def scenario_from_resolved(text: str) -> Scenario:
    """Read back a resolved `scenario.toml` of a run directory (its `[run]` table ignored)."""
    raw = tomllib.loads(text)
    raw.pop("run", None)
    return validate_scenario(raw)
