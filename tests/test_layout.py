"""The package layout DESIGN.md fixes: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MATRIX_ORDER = [
    "specs",
    "trained_states",
    "cells",
    "console",
    "flags",
    "config",
    "results",
    "tables",
    "runner",
]
"""`fedsim.attack_matrix` modules: each may import only the ones before it."""


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_attacks_and_defenses_never_import_fedsim() -> None:
    offenders = [
        f"{path.relative_to(REPO)} imports {module}"
        for package in ("attacks", "defenses")
        for path in sorted((REPO / package).rglob("*.py"))
        for module in _imported_modules(path)
        if module == "fedsim" or module.startswith("fedsim.")
    ]
    assert offenders == []


def test_attack_matrix_modules_import_one_way() -> None:
    package = REPO / "fedsim" / "attack_matrix"
    assert sorted(p.stem for p in package.glob("*.py") if p.stem != "__init__") == sorted(
        MATRIX_ORDER
    )
    backwards = []
    for position, name in enumerate(MATRIX_ORDER):
        for module in _imported_modules(package / f"{name}.py"):
            if module.startswith("fedsim.attack_matrix."):
                used = module.rsplit(".", 1)[1]
                if MATRIX_ORDER.index(used) >= position:
                    backwards.append(f"{name} imports {used}")
    assert backwards == []
