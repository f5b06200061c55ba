"""Every test carries a kind marker (pyproject's unit / integration / e2e), so `pytest -m unit`
selects what it says: a file with a module-level ``pytestmark`` of a kind, or a kind on each test."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]
KINDS = {"unit", "integration", "e2e"}


def _kinds(node: ast.AST) -> set[str]:
    """The kind markers named anywhere inside ``node`` (``pytest.mark.<kind>`` attributes)."""
    return {
        n.attr
        for n in ast.walk(node)
        if isinstance(n, ast.Attribute)
        and n.attr in KINDS
        and isinstance(n.value, ast.Attribute)
        and n.value.attr == "mark"
    }


def unmarked_tests(path: Path) -> list[str]:
    """The test functions of one file that no kind marker covers."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        named = isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets)
        if named and _kinds(node.value):
            return []
    missing = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            if any(_kinds(d) for d in node.decorator_list):
                continue
            funcs = [f for f in node.body if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            funcs = [node]
        else:
            continue
        missing += [f.name for f in funcs if f.name.startswith("test") and not any(_kinds(d) for d in f.decorator_list)]
    return missing


def test_every_test_file_marks_its_kind() -> None:
    files = sorted(TESTS.rglob("test_*.py"))
    assert len(files) > 30
    missing = {str(f.relative_to(TESTS)): names for f in files if (names := unmarked_tests(f))}
    assert not missing, f"tests without a kind marker ({', '.join(sorted(KINDS))}): {missing}"


def test_the_check_sees_an_unmarked_test(tmp_path: Path) -> None:
    marked = tmp_path / "test_a.py"
    marked.write_text("import pytest\n\n@pytest.mark.unit\ndef test_x():\n    pass\n\ndef helper():\n    pass\n")
    assert unmarked_tests(marked) == []
    unmarked = tmp_path / "test_b.py"
    unmarked.write_text("import pytest\n\n@pytest.mark.slow\ndef test_y():\n    pass\n")
    assert unmarked_tests(unmarked) == ["test_y"]
    module = tmp_path / "test_c.py"
    module.write_text(
        "import pytest\n\npytestmark = [pytest.mark.integration, pytest.mark.slow]\n\ndef test_z():\n    pass\n"
    )
    assert unmarked_tests(module) == []
