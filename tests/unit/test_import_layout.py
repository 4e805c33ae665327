"""The project's module structure across its packages: no import cycles, no class defined under one
name in two packages (issue 11: two `RouteTable`s, three `Path`s, two `decode_body`s, two `Origin`s),
no module past MAX_LINES (a module that long is usually two concepts: split it by concept).

The import graph is read from the source (ast), every import counted wherever it stands (one inside a
function is still an edge of a cycle, only a later one). `from pkg import sub` where `sub` is a module
is an edge to `pkg.sub`, not to `pkg`'s `__init__` (Python loads the parent package first for any
import of a submodule; that is not a dependency on what the `__init__` defines).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bgpd", "felixd", "proto", "datastore", "ctl", "runtime", "startup", "lab")

# The names issue 11 found defined twice or more: each now has one definition.
ONCE = ("RouteTable", "Path", "decode_body", "Origin")
# Class names still defined in two packages (known; a new clash fails the test below).
KNOWN_CLASHES: dict[str, set[str]] = {}
MAX_LINES = 500


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


@cache
def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    """The project module that `name` (a module path, maybe of an attribute) is in."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    found: set[str] = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            found.update(m for a in node.names if (m := _owner(a.name, mods)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            submodules = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in mods]
            found.update(submodules)
            if len(submodules) < len(node.names) and (m := _owner(module, mods)):
                found.add(m)
    found.discard(name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_across_the_packages() -> None:
    mods = _modules()
    assert {"bgpd.speaker", "felixd.daemon", "proto.feed", "datastore.base"} <= set(mods)
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def _definitions() -> dict[str, set[str]]:
    """Top-level class and function names -> the modules that define them."""
    where: dict[str, set[str]] = defaultdict(set)
    for name, path in _modules().items():
        for node in _tree(path).body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                where[node.name].add(name)
    return where


def test_names_issue_11_found_twice_are_defined_once() -> None:
    where = _definitions()
    twice = {n: sorted(where[n]) for n in ONCE if len(where.get(n, ())) > 1}
    assert not twice, f"defined more than once: {twice}"


def test_no_new_class_name_clash_across_packages() -> None:
    clashes: dict[str, set[str]] = {}
    for name, path in _modules().items():
        for node in _tree(path).body:
            if isinstance(node, ast.ClassDef):
                clashes.setdefault(node.name, set()).add(name.split(".")[0])
    new = {n: sorted(p) for n, p in clashes.items() if len(p) > 1 and p != KNOWN_CLASHES.get(n)}
    assert not new, f"class names defined in two packages: {new}"


def test_no_module_past_the_size_limit() -> None:
    mods = _modules()
    assert {"bgpd.speaker", "proto.bgp.codec", "lab.story"} <= set(mods)
    sizes = {name: len(path.read_text().splitlines()) for name, path in mods.items()}
    over = {name: n for name, n in sorted(sizes.items()) if n > MAX_LINES}
    assert not over, f"modules past {MAX_LINES} lines (split each by concept): {over}"
