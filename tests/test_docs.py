"""Every Python block in README.md and docs/*.md runs.

Blocks of one document run in order in one namespace, in a fresh working
folder, as a reader would paste them. A block right after the line
``<!-- docs-test: skip REASON -->`` is skipped with that reason (it needs
the network, say); the reason is shown in pytest's summary.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
_SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s+(.*?)\s*-->\s*$")


def python_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """``(line, code, skip_reason)`` of every fenced Python block."""
    blocks = []
    for m in _BLOCK.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = _SKIP.search(before)
        blocks.append((line, m.group(1), skip.group(1) if skip else None))
    return blocks


def test_the_block_finder_reads_code_and_skip_markers():
    text = "a\n```python\nx = 1\n```\n<!-- docs-test: skip needs the network -->\n```python\ny = 2\n```\n"
    assert python_blocks(text) == [(2, "x = 1\n", None), (6, "y = 2\n", "needs the network")]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_python_blocks_run(doc, tmp_path, monkeypatch):
    blocks = python_blocks(doc.read_text())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    skipped = []
    for line, code, skip in blocks:
        if skip is not None:
            skipped.append(f"line {line}: {skip}")
            continue
        try:
            exec(compile(code, f"{doc.name}:{line}", "exec"), namespace)
        except Exception as err:  # noqa: BLE001 - report which block failed
            raise AssertionError(f"{doc.name}, Python block at line {line} failed: {err!r}") from err
    if skipped and len(skipped) == len(blocks):
        pytest.skip("; ".join(skipped))
