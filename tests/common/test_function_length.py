"""No function of the main job, the trainer or the inference server is longer than 80 lines (issue
#31): a function a reader cannot see on one screen is where a stage's wiring, a loop's stop
conditions or a route's checks hide from review."""

from __future__ import annotations

import ast

import pytest

from tests.procs import REPO

pytestmark = pytest.mark.unit
MAX_LINES = 80
PACKAGES = ("pipeline", "trainer", "inference")


def long_functions(source: str, limit: int) -> list[tuple[str, int]]:
    """(name, lines) of every function or method in ``source`` longer than ``limit`` lines, the
    decorators and docstring included."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            lines = node.end_lineno - first + 1
            if lines > limit:
                out.append((node.name, lines))
    return out


def test_the_check_sees_a_long_function() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    assert long_functions(f"def f():\n{body}\n", MAX_LINES) == [("f", MAX_LINES + 1)]
    assert long_functions(f"def f():\n{body}\n", MAX_LINES + 1) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_is_longer_than_80_lines(package: str) -> None:
    found = [
        f"{path.relative_to(REPO)}: {name} ({lines} lines)"
        for path in sorted((REPO / package / "src").rglob("*.py"))
        for name, lines in long_functions(path.read_text(), MAX_LINES)
    ]
    assert not found, "split these functions:\n" + "\n".join(found)
