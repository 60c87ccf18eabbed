"""The house's single owners and its import layers, checked on the source (issue 13).

Each concern lives in one module; this test fails when a second place starts doing it:
- ONNX file I/O (`onnx.load*` / `onnx.save*`) only in acmix_deploy/onnxio.py;
- ONNX Runtime sessions (`InferenceSession`) only in acmix_deploy/runners/;
- preprocessing types and readers only in acmix_deploy/preprocess.py;
- node-name parsing (exporter scopes, "/"-joined node paths, TensorRT layer names) only in
  acmix_deploy/onnx_names.py;
- the import layers of pyproject's import-linter contract (cli > bench / serve / train > export /
  passes / precision / trt > runners > registry > archs > nn), run through lint-imports.
serve/templates/*.py are exempt: Triton's python backend runs them where acmix_deploy is not installed.
"""

from __future__ import annotations

import ast
import functools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "acmix_deploy"
EXEMPT = ("acmix_deploy/serve/templates/",)


@functools.cache
def sources() -> dict[str, ast.Module]:
    trees = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if not rel.startswith(EXEMPT):
            trees[rel] = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    return trees


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def uses(predicate) -> dict[str, list[int]]:
    """Files (and lines) where an attribute chain or an imported name satisfies `predicate(dotted)`."""
    found: dict[str, list[int]] = {}
    for rel, tree in sources().items():
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Attribute):
                names.append(_dotted(node))
            elif isinstance(node, ast.ImportFrom) and node.module:
                names += [f"{node.module}.{alias.name}" for alias in node.names]
            if any(predicate(n) for n in names):
                found.setdefault(rel, []).append(node.lineno)
    return found


def definitions(predicate) -> dict[str, list[str]]:
    """Files that define a class or function whose name satisfies `predicate(name)`."""
    found: dict[str, list[str]] = {}
    for rel, tree in sources().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and predicate(node.name):
                found.setdefault(rel, []).append(node.name)
    return found


def test_the_walk_sees_the_package():
    assert len(sources()) > 120
    assert "acmix_deploy/onnxio.py" in sources() and "acmix_deploy/runners/ort.py" in sources()


def test_onnx_files_are_read_and_written_only_in_onnxio():
    io_names = {"onnx.load", "onnx.load_model", "onnx.load_from_string", "onnx.save", "onnx.save_model",
                "onnx.external_data_helper.load_external_data_for_model"}
    found = uses(lambda dotted: dotted in io_names)
    assert set(found) == {"acmix_deploy/onnxio.py"}, found


def test_onnxruntime_sessions_are_made_only_in_the_runners():
    found = uses(lambda dotted: dotted.endswith(".InferenceSession") or dotted == "onnxruntime.InferenceSession")
    assert found and all(rel.startswith("acmix_deploy/runners/") for rel in found), found


def test_preprocessing_lives_in_preprocess():
    """Preprocessing types, and the code that builds one from raw values, are preprocess.py's:
    calibration, eval and training cannot decode the same file differently."""
    types_found = {
        rel for rel, tree in sources().items() for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and "preprocess" in node.name.lower()
    }
    assert types_found == {"acmix_deploy/preprocess.py"}, types_found
    # made from raw values only there; elsewhere through its from_card / from_onnx / from_metadata readers
    makers = {
        rel for rel, tree in sources().items() for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _dotted(node.func).split(".")[-1] == "Preprocessing"
    }
    assert makers <= {"acmix_deploy/preprocess.py"}, makers
    readers = uses(lambda dotted: dotted.split(".")[-1] in {"from_card", "from_onnx", "from_metadata"})
    assert len(readers) >= 3  # calibration, eval, training and serving read through them


def test_node_names_are_parsed_only_in_onnx_names():
    parsers = {"module_path", "op_of", "fused_name", "engine_layer_node", "resolve_node", "scope_path",
               "join_scopes", "rename_nodes"}
    defined = definitions(lambda name: name in parsers)
    assert set(defined) == {"acmix_deploy/onnx_names.py"}, defined
    # the exporter's scope metadata and "/"-joined node paths are read nowhere else
    scope_readers = {
        rel for rel, tree in sources().items() for node in ast.walk(tree)
        if (isinstance(node, ast.Constant) and node.value == "pkg.torch.onnx.name_scopes")
        or (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("split", "rsplit", "partition", "rpartition")
            and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == "/")
    } | set(uses(lambda dotted: dotted.endswith(".SCOPE_KEY")))
    assert "acmix_deploy/onnx_names.py" in scope_readers  # the walk recognises the parser itself
    assert scope_readers <= {"acmix_deploy/onnx_names.py"}, scope_readers


def test_import_layers_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        pytest.fail("lint-imports is missing: pip install -e '.[dev]' (import-linter is in the dev extra)")
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 kept, 0 broken" in result.stdout
