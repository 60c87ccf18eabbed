"""What can be checked about the GPU-server Dockerfile without building it."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


def test_base_image_is_a_pinned_ngc_image():
    froms = [arg for word, arg in _instructions() if word == "FROM"]
    assert len(froms) == 1
    assert re.fullmatch(r"nvcr\.io/nvidia/(pytorch|tensorrt):\d{2}\.\d{2}-py3", froms[0]), froms[0]


def test_runs_as_non_root_with_the_cli_as_entrypoint():
    rows = _instructions()
    users = [arg for word, arg in rows if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    entry = [arg for word, arg in rows if word == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["acmix-deploy"]
    # the user is created before it is used
    runs = " ".join(arg for word, arg in rows if word == "RUN")
    assert re.search(rf"useradd .*\b{re.escape(users[-1])}\b", runs)


def test_installs_extras_that_exist():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runs = " ".join(arg for word, arg in _instructions() if word == "RUN")
    extras = re.findall(r"[./\w-]\[([a-z0-9_,-]+)\]", runs)
    assert extras, "the image must install the package with an extra"
    declared = pyproject["project"]["optional-dependencies"]
    for group in extras:
        for extra in group.split(","):
            assert extra in declared, f"extra {extra!r} is not in pyproject.toml"
    assert any(dep.startswith("tensorrt") for dep in declared["gpu"])
    assert "acmix-deploy" in pyproject["project"]["scripts"]
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert "artifacts" in ignore and ".venv" in ignore
