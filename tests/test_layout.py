"""The package's architecture rules, checked on its source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "stormcast_plugin"
WORKBENCH = ("train", "datagen", "scoring", "cli")
MAX_LINES = 600


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        yield path, rel


def _imported_modules(path: Path) -> set[str]:
    """Every module name an ``import`` or ``from ... import`` in the file
    names, at any depth (imports inside functions count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import of {node.module!r}"
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _is_workbench(rel: Path) -> bool:
    return rel.parts[0] in WORKBENCH


def test_the_plugin_half_never_imports_the_workbench_half():
    offences = []
    for path, rel in _modules():
        if _is_workbench(rel):
            continue
        for name in _imported_modules(path):
            parts = name.split(".")
            if parts[0] == "stormcast_plugin" and len(parts) > 1 and parts[1] in WORKBENCH:
                offences.append(f"{rel} imports {name}")
    assert not offences, "plugin modules import the workbench:\n" + "\n".join(offences)


def test_the_checker_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from stormcast_plugin.train.config import load_config\n")
    assert "stormcast_plugin.train.config" in _imported_modules(probe)


@pytest.mark.parametrize("path", [p for p, _ in _modules()], ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_the_line_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines (limit {MAX_LINES}): split it"
