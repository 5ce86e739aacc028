"""The documentation site's contract: every public name in the API reference, every example titled.

The docs themselves are built by ``docs/build.sh`` in CI, never inside pytest (it executes
every example and takes tens of seconds).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

import superposition

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api.rst"
EXAMPLES = sorted((ROOT / "examples").glob("plot_*.py"))

_DIRECTIVE = re.compile(
    r"^\.\. auto(?:module|class|function|data|attribute|method|exception|property)::\s+(\S+)",
    re.MULTILINE,
)


def _documented() -> set[str]:
    return set(_DIRECTIVE.findall(API.read_text(encoding="utf-8")))


def test_api_reference_parses() -> None:
    assert "superposition.ToyModel" in _documented()


@pytest.mark.parametrize("name", sorted(set(superposition.__all__) - {"__version__"}))
def test_public_name_in_api_reference(name: str) -> None:
    documented = _documented()
    assert f"superposition.{name}" in documented, (
        f"superposition.{name} is in superposition.__all__ but docs/api.rst has no autodoc "
        f"directive for it; add '.. auto...:: superposition.{name}'"
    )


def test_api_reference_documents_each_name_once() -> None:
    names = _DIRECTIVE.findall(API.read_text(encoding="utf-8"))
    repeated = sorted({n for n in names if names.count(n) > 1})
    assert not repeated, f"docs/api.rst documents {repeated} more than once"


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5, f"expected the five gallery examples, got {EXAMPLES}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_has_docstring_title(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=True)
    assert doc, f"{path.name} needs a module docstring: sphinx-gallery takes its title from it"
    lines = doc.splitlines()
    assert len(lines) >= 2, f"{path.name}: expected a title and an underline, got {doc!r}"
    title, underline = lines[0].strip(), lines[1].strip()
    assert title, f"{path.name}: the docstring must start with the title line, got {doc!r}"
    expected = f"{path.name}: expected the title {title!r} underlined with '=' at least as long"
    assert set(underline) == {"="}, f"{expected}, got {underline!r}"
    assert len(underline) >= len(title), f"{expected}, got {underline!r}"


# --------------------------------------------------------------------------- benchmark table


def _benchmark_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "benchmark_table", ROOT / "docs" / "benchmark_table.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_table_without_results(tmp_path: Path) -> None:
    table = _benchmark_table()
    assert table.render(tmp_path / "latest.json") == table.NOT_RUN


def test_benchmark_table_renders_rows(tmp_path: Path) -> None:
    table = _benchmark_table()
    results = tmp_path / "latest.json"
    rows = [
        {"name": "fit vs notebook", "value": 0.25, "unit": "x", "bar": "<= 0.5", "met": True},
        {"name": "a | b", "value": 3.0, "unit": "s", "bar": "", "met": True},
    ]
    results.write_text(json.dumps({"date": "2026-01-01", "quick": False, "rows": rows}))
    text = table.render(results)
    assert "| fit vs notebook | 0.25 | x | <= 0.5 | yes |" in text
    assert "| a \\| b | 3 | s |  |  |" in text
    assert "1 of 1 rows with a target met it." in text
