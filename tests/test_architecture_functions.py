"""No function in acmix_deploy/ is longer than 80 lines: long functions are split into steps that read
top to bottom. `_KNOWN_LONG` lists the ones still waiting for their split; it may only hold functions
that really are still long (so it empties itself as they are split, and cannot go stale)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

MAX_LINES = 80
ROOT = Path(__file__).resolve().parents[1]
_KNOWN_LONG: set[str] = set()


@functools.cache
def function_lengths() -> dict[str, int]:
    """'path:qualified.name' -> lines (decorators and docstring included) of every def in the package."""
    lengths: dict[str, int] = {}
    for path in sorted((ROOT / "acmix_deploy").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)

        def visit(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                    lengths[f"{rel}:{prefix}{child.name}"] = child.end_lineno - start + 1
                    visit(child, f"{prefix}{child.name}.")
                elif isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")

        visit(tree, "")
    return lengths


def test_no_function_is_longer_than_80_lines():
    lengths = function_lengths()
    assert len(lengths) > 500  # the walk found the package's functions
    long = {name: n for name, n in lengths.items() if n > MAX_LINES and name not in _KNOWN_LONG}
    assert not long, "split these into steps of <= 80 lines: " + ", ".join(f"{k} ({v})" for k, v in sorted(long.items()))


def test_known_long_list_is_not_stale():
    lengths = function_lengths()
    stale = sorted(name for name in _KNOWN_LONG if lengths.get(name, 0) <= MAX_LINES)
    assert not stale, f"no longer long (or gone): remove from _KNOWN_LONG: {stale}"
