"""The package layout DESIGN.md fixes: the folders README's Layout lists, and the order of
`fedsim.attack_matrix`'s modules (which packages may import which: tests/test_imports.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FOLDERS = ("attacks", "defenses", "fedsim", "scenarios", "benchmarks", "scripts", "tests")
"""The repository's top-level folders (DESIGN.md fixes them)."""

MATRIX_ORDER = [
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


def _folders() -> set[str]:
    """Every folder under the top-level ones that holds a file (caches aside), as `a/b/`."""
    found = set()
    for top in FOLDERS:
        for path in (REPO / top).rglob("*"):
            parts = path.relative_to(REPO).parts
            if path.is_file() and not any(p.startswith((".", "__")) for p in parts[:-1]):
                found.add("/".join(parts[:-1]) + "/")
    return found


def _readme_layout() -> dict[str, str]:
    """Folder → its line in the README's Layout section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)```", section, flags=re.DOTALL)
    assert block, "README's Layout section has no folder list"
    rows = [line.split(maxsplit=1) for line in block.group(1).splitlines() if line.strip()]
    return {row[0]: row[1] if len(row) > 1 else "" for row in rows}


def test_readme_layout_lists_every_folder_and_package() -> None:
    """One line per folder and package, each saying what it holds, and none that is gone."""
    listed = _readme_layout()
    folders = _folders()
    assert sorted(folders - set(listed)) == [], "folders missing from README's Layout"
    assert sorted(set(listed) - folders) == [], "README's Layout lists folders that are gone"
    assert [folder for folder, line in listed.items() if len(line.split()) < 3] == []
