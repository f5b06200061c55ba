"""No two modules of the product import each other in a loop, counting every import a reader sees
(module level, inside functions and under ``TYPE_CHECKING``): a loop means neither module can be
read, tested or moved without the other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.procs import REPO

pytestmark = pytest.mark.unit


def product_modules() -> dict[str, Path]:
    """{dotted name: file} of every module under a package's ``src/mvp`` (generated stubs excluded)."""
    out = {}
    for path in REPO.glob("*/src/mvp/**/*.py"):
        package_root = REPO / path.relative_to(REPO).parts[0] / "src"
        parts = path.relative_to(package_root).with_suffix("").parts
        if "v1" in parts or ".venv" in path.parts:
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The product modules ``path`` imports (``from pkg import mod`` counts as importing ``pkg.mod``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def graph_of(modules: dict[str, Path]) -> dict[str, set[str]]:
    known = set(modules)
    return {name: imports_of(path, name, known) for name, path in modules.items()}


def test_the_product_has_no_import_loop() -> None:
    modules = product_modules()
    assert {"mvp.pipeline.run", "mvp.pipeline.stages.training", "mvp.trainer.local"} <= set(modules)
    assert cycles(graph_of(modules)) == []


def test_a_loop_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
