"""Checks that tie scenario fields to the registries and keep paths where they belong.

Used as pydantic validators by `fedsim.scenario.config`, so an unknown data set,
model, attack or defense is refused when the scenario is loaded — before any data
is read or any engine starts — with the accepted names in the message. Each check
returns the value or raises `ValueError` with a one-line message.

Path rule: `output` and `data.root` are roots the user chooses (any directory; empty
strings and NUL bytes are refused). Everything fedsim writes or reads lies beneath
them under names it makes itself: the run directory is `<output>/<name>-<time>`, so
`name` must be a slug (no separators, no `..`), and data files have fixed names
(archives are extracted by `fedsim.data.download.extract_tar_safely`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence

from pydantic import ValidationInfo

from attacks.lookup import unknown_name

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_LOOKS_LIKE_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*: ")


def _sentence(message: str, prefix: str) -> str:
    """A registry's message without its own `name: ` lead, which would read as a field."""
    message = message.splitlines()[0] if message else message
    message = message.removeprefix(prefix)
    if not _LOOKS_LIKE_FIELD.match(message):
        return message
    return f"{prefix.strip(': ') or 'in'} {message}"


def known_dataset(name: str) -> str:
    from fedsim.data.registry import DATASETS

    if name not in DATASETS:
        raise ValueError(unknown_name("data set", name, DATASETS, lead=False))
    return name


def train_samples(name: str) -> int | None:
    """Training-split size of a registered data set, if the registry states it."""
    from fedsim.data.registry import DATASETS

    entry = DATASETS.get(name)
    return None if entry is None else entry.train_samples


def known_model(name: str) -> str:
    from fedsim.models.registry import MODELS

    if name not in MODELS:
        raise ValueError(unknown_name("model", name, sorted(MODELS), lead=False))
    return name


ATTACK_CHECK = "registered_attacks"
"""Validation-context flag: attack names and options must be those of the `attacks` registry.

`load_scenario` sets it (scenario files and `--set`); code that hands the auditor its
own attack objects (`run_federation(attacks=...)`) may validate without it."""


def _attacks_checked(info: ValidationInfo | None) -> bool:
    return bool(info is not None and info.context and info.context.get(ATTACK_CHECK))


def known_attack(name: str, info: ValidationInfo) -> str:
    from attacks.registry import ATTACKS
    from attacks.specs import ADAPTED

    if _attacks_checked(info) and name not in ATTACKS and name != ADAPTED:
        raise ValueError(unknown_name("attack", name, [*sorted(ATTACKS), ADAPTED], lead=False))
    return name


def check_attack_overrides(
    name: str, overrides: Mapping[str, object], info: ValidationInfo | None
) -> None:
    """Build the attack once with its overrides; its own checks name the bad option."""
    from attacks.errors import AttackError
    from attacks.registry import build_attack
    from attacks.specs import ADAPTED

    if not _attacks_checked(info) or name == ADAPTED:
        return  # `adapted` keeps the options its chosen attack accepts
    try:
        build_attack(name, **overrides)
    except AttackError as error:
        raise ValueError(f"overrides: {_sentence(str(error), 'attack: ')}") from None
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"overrides: attack {name!r} refused its options ({_sentence(str(error), '')})"
        ) from None


def valid_defense(spec: str) -> str:
    from defenses import parse_defense
    from defenses.errors import DefenseError

    try:
        parse_defense(spec)
    except DefenseError as error:
        raise ValueError(_sentence(str(error), "defense: ")) from None
    return spec


def check_defense_chain(specs: Sequence[str]) -> None:
    """The defenses stacked in order (composition rules, e.g. one model-stage defense)."""
    from defenses import parse_defense
    from defenses.errors import DefenseError

    if not specs:
        return
    try:
        parse_defense(list(specs))
    except DefenseError as error:
        raise ValueError(f"defenses: {_sentence(str(error), 'defense: ')}") from None


def slug(value: str) -> str:
    if not _SLUG.match(value) or value in (".", ".."):
        raise ValueError(
            f"expected 1 to 64 letters, digits, '.', '_' or '-' starting with a letter or"
            f" digit (it names the run directory), got {value!r}"
        )
    return value


def directory(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a directory path, got an empty string")
    if "\x00" in value:
        raise ValueError("a path may not contain NUL characters")
    return value


@functools.cache
def has_batch_norm(model: str, dataset: str) -> bool:
    """Whether model `model`, built for `dataset`, has batch-norm layers (built on the
    meta device: no weights are allocated); False where the two do not fit."""
    import torch

    from fedsim.data.registry import DATASETS
    from fedsim.errors import ConfigError
    from fedsim.models.registry import build_model

    try:
        with torch.device("meta"):
            built = build_model(model, DATASETS[dataset].info)
    except (ConfigError, KeyError):
        return False
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in built.modules())
