"""The shape of the library (docs/architecture.md): rooms keep their private names to themselves
and stay small. The layering itself is import-linter's contract in pyproject.toml, run by
.ci/run; these checks are what it cannot see."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "superposition"
MODULES = sorted(SRC.rglob("*.py"))
# A module of ~600 lines is about what a newcomer reads in one sitting.
MAX_LINES = 600


def _room(path: Path) -> str:
    """``probe`` for ``src/superposition/probe/x.py``; a top-level module is its own room."""
    parts = path.relative_to(SRC).parts
    return parts[0].removesuffix(".py")


def _module_room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "superposition" else None


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _foreign_private_uses(path: Path, room: str | None = None) -> list[str]:
    """``from superposition.<other room>... import _name`` and ``<alias of another room's
    module>._name``, with line numbers."""
    room = room or _room(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> room of the module (or name) it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                other = _module_room(full if node.module == "superposition" else node.module)
                if other is None:
                    continue
                aliases[alias.asname or alias.name] = other
                shared = node.module == "superposition" and alias.name in ("_checks", "_io")
                if other != room and _private(alias.name) and not shared:
                    found.append(f"{path.name}:{node.lineno} imports {full}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                other = _module_room(alias.name)
                if other is not None and alias.asname:
                    aliases[alias.asname] = other
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and aliases[node.value.id] != room
            and _private(node.attr)
        ):
            found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_the_private_name_check_can_fail(tmp_path: Path) -> None:
    fake = tmp_path / "fake.py"
    fake.write_text(
        "from superposition.probe.probe import _hidden\n"
        "from superposition import distributed as d\n"
        "from superposition.units import records\n"
        "d._secret()\n"
        "records.public()\n",
        encoding="utf-8",
    )
    assert _foreign_private_uses(fake, room="units") == [
        "fake.py:1 imports superposition.probe.probe._hidden",
        "fake.py:4 uses d._secret",
    ]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_room_uses_another_rooms_private_names(path: Path) -> None:
    assert _foreign_private_uses(path) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_every_module_is_readable_in_one_sitting(path: Path) -> None:
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(SRC)} has {n} lines; split it by job"
