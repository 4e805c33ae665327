"""proto.bgp's module structure: no import cycles (the package's __init__ included) and construct out
of the import path of a running speaker. Module size is checked for every package in
tests/unit/test_import_layout.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "proto" / "bgp"


def _module_name(path: Path) -> str:
    return "proto.bgp" if path.name == "__init__.py" else f"proto.bgp.{path.stem}"


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The proto.bgp modules `path` imports at module level or in functions (any import counts:
    one inside a function is still an edge of the cycle, only a later one)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in modules:
                found.add(node.module)
            # `from proto.bgp import x` names the package (and x, when x is a module)
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    found.add(f"{node.module}.{alias.name}")
    return found


def _graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.glob("*.py"))
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) - {_module_name(p)} for p in files}


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_only_the_package_init_imports_from_the_package() -> None:
    graph = _graph()
    offenders = [m for m, deps in graph.items() if "proto.bgp" in deps]
    assert not offenders, f"import the module, not the package: {offenders}"


def _module_level_imports(path: Path) -> set[str]:
    """Modules imported by the statements at the top of `path` (not inside functions)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_construct_loads_only_with_a_specification_module(path: Path) -> None:
    """construct and the specification modules (`*_spec`) are imported at module level only by
    specification modules: everything else imports them inside the function that needs them, so
    importing the codec (and a speaker running it on well-formed input) never loads construct.
    tests/unit/test_bgp_lazy_spec.py checks the same on a running speaker."""
    if path.stem.endswith("_spec"):
        return
    specs = {f"proto.bgp.{p.stem}" for p in PACKAGE.glob("*_spec.py")}
    eager = {m for m in _module_level_imports(path) if m.split(".")[0] == "construct" or m in specs}
    assert not eager, f"{path.name} imports {sorted(eager)} at module level: import it where it is used"
