"""Who may import whom, between `attacks`, `defenses` and the sub-packages of `fedsim`.

Every import of every module counts, the lazy ones inside functions and those under
`TYPE_CHECKING` included: a dependency is a dependency wherever its line stands. The
graph's nodes are `attacks`, `defenses`, each sub-package of `fedsim` and each module
directly in `fedsim/` (`fedsim.records`, `fedsim.cli`, …); inside a sub-package that has
sub-packages of its own (`fedsim.flower`), those are nodes of a graph of their own.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOP = ("attacks", "defenses", "fedsim")

KNOWN: dict[tuple[str, str], str] = {}
"""Edges that break the rules below and are on their way out: each says why it exists and
where it goes. Empty it as they go; an entry whose edge is gone fails the test."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(name: str) -> bool:
    return (REPO / name.replace(".", "/") / "__init__.py").is_file()


def _exists(name: str) -> bool:
    return _is_package(name) or (REPO / (name.replace(".", "/") + ".py")).is_file()


def _imports(path: Path) -> set[str]:
    """The repository modules `path` imports, wherever the import stands."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                # `from fedsim.scenario import names` imports the module fedsim.scenario.names
                submodule = f"{base}.{alias.name}"
                found.add(submodule if _exists(submodule) else base)
    return {m for m in found if m.split(".")[0] in TOP}


def _unit(module: str, within: str) -> str | None:
    """The node of `module` in the graph of package `within`: the sub-package or the module
    directly under `within` that holds it; None outside `within` or for `within` itself."""
    if within == "":
        return module.split(".")[0]
    prefix = within + "."
    if not module.startswith(prefix):
        return None
    return prefix + module[len(prefix) :].split(".")[0]


def _graph(within: str) -> dict[tuple[str, str], list[str]]:
    """(from, to) → the imports that make each edge between the nodes of `within`."""
    roots = TOP if within == "" else (within.split(".")[0],)
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for root in roots:
        for path in sorted((REPO / root).rglob("*.py")):
            source = _module_name(path)
            start = _unit(source, within)
            for target in _imports(path):
                end = _unit(target, within)
                if start is not None and end is not None and start != end:
                    edges[(start, end)].append(f"{source} imports {target}")
    return dict(edges)


def _cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    successors: dict[str, list[str]] = defaultdict(list)
    for start, end in sorted(edges):
        successors[start].append(end)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in successors[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted({n for edge in edges for n in edge}):
        if node not in index:
            visit(node)
    return components


def _packages_with_subpackages() -> list[str]:
    """`fedsim` and every package under it that holds packages of its own."""
    found = []
    for init in sorted((REPO / "fedsim").rglob("__init__.py")):
        package = _module_name(init)
        if any(_is_package(f"{package}.{p.name}") for p in init.parent.iterdir() if p.is_dir()):
            found.append(package)
    return found


def _all_edges() -> dict[tuple[str, str], list[str]]:
    """The edges of every graph: between the top packages, and inside each package."""
    edges = _graph("")
    for within in _packages_with_subpackages():
        edges.update(_graph(within))
    return edges


def test_the_import_walk_sees_lazy_imports_and_imported_modules() -> None:
    """The walk itself: an import inside a function counts, and `from x import module`
    names the module."""
    assert "fedsim.flower.apps.client_app" in _imports(REPO / "fedsim/flower/simulation.py")
    assert "fedsim.scenario.names" in _imports(REPO / "fedsim/scenario/fields.py")
    assert ("fedsim.flower", "fedsim.auditor") in _graph("fedsim")
    assert ("fedsim.flower.simulation", "fedsim.flower.apps") in _graph("fedsim.flower")
    assert _cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c"]]


REFUSED = {("attacks", "fedsim"), ("defenses", "fedsim"), ("defenses", "attacks")}
"""Edges between the top packages that the rule refuses: `attacks` and `defenses` depend
on torch alone, never on `fedsim`; `attacks` may import `defenses` (the spec grammar, the
`Defense` an attack is adapted to), `defenses` never imports `attacks`."""


def test_attacks_may_import_defenses_but_not_back_and_neither_imports_fedsim() -> None:
    """Neither `attacks` nor `defenses` imports `fedsim`, and `defenses` never imports
    `attacks`; `attacks` importing `defenses` is allowed."""
    offenders = [
        line
        for (start, end), lines in _graph("").items()
        if (start, end) in REFUSED and (start, end) not in KNOWN
        for line in lines
    ]
    assert offenders == []


def test_known_exceptions_still_exist() -> None:
    """An edge of `KNOWN` that is gone must leave the list, so that it cannot come back."""
    edges = _all_edges()
    assert [edge for edge in KNOWN if edge not in edges] == []


def test_no_cycle_among_the_packages_of_fedsim() -> None:
    """No cycle among `fedsim`'s sub-packages and modules, nor inside any sub-package
    among its own sub-packages and modules, the `KNOWN` edges aside."""
    found = {}
    for within in _packages_with_subpackages():
        edges = {edge for edge in _graph(within) if edge not in KNOWN}
        for component in _cycles(edges):
            found[within] = component
    assert found == {}, found
