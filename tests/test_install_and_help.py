"""What a new user reads first: --version, every command's help, the install extras and the Dockerfile."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import typer

import acmix_deploy
from acmix_deploy.cli import app
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _command_paths(group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of a click group (Typer vendors click: no `import click`, which a fresh
    install need not have)."""
    paths = [prefix]
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a group
            paths += _command_paths(cmd, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


def test_version_prints_the_package_version():
    result = run_cli("--version")
    assert result.code == 0 and result.out.strip() == f"acmix-deploy {acmix_deploy.__version__}"


def test_no_help_shows_a_bool_placeholder():
    paths = _command_paths(typer.main.get_command(app))
    assert len(paths) >= 15  # the root, every command, the data group and its commands
    for path in paths:
        result = run_cli(*path, "--help", env={"COLUMNS": "120"})
        assert result.code == 0, (path, result.err)
        assert "<bool>" not in result.out, path
        assert "--help" in result.out
    bench = run_cli("bench", "--help", env={"COLUMNS": "200"}).out
    assert "<int>" in bench and "<path>" in bench  # options that take values keep their type label


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_gpu_extra_is_one_cuda_major_and_the_dockerfile_agrees():
    gpu = _extras()["gpu"]
    trt = [d for d in gpu if d.startswith("tensorrt")]
    ort = [d for d in gpu if d.startswith("onnxruntime-gpu")]
    # plain `tensorrt` resolves to its CUDA 13 build; onnxruntime-gpu >= 1.27 is built for CUDA 13
    assert trt == ["tensorrt-cu12>=10.0,<12"] and ort == ["onnxruntime-gpu>=1.18,<1.27"]
    assert _extras()["ort-gpu"] == ort
    docker = (ROOT / "Dockerfile").read_text()
    assert '"/src[ort-gpu]"' in docker and "CUDA 12" in docker
    assert re.search(r"^FROM nvcr\.io/nvidia/pytorch:25\.06-py3$", docker, re.M)  # CUDA 12.9 base


def test_readme_install_section_names_both_machines_and_what_each_command_pulls():
    readme = (ROOT / "README.md").read_text()
    install = readme[readme.index("## Install"):readme.index("## Models")]
    assert "https://download.pytorch.org/whl/cpu" in install and "not run by CI" in install
    assert "pip install torch==2.13.0" in install and ".ci/run" in install
    assert "tensorrt-cu12" in install and "CUDA 12" in install
    ci = (ROOT / ".ci" / "run").read_text()
    extras = re.search(r'pip install -q -e "(\.\[[a-z,-]+\])"', ci)
    assert "pip install -q torch==2.13.0" in ci and extras, ci
    assert f'pip install torch==2.13.0 && pip install -e "{extras.group(1)}"' in install  # README = what CI runs
