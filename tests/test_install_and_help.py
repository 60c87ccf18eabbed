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


# ---- one CLI vocabulary (issue 13): the same option means the same thing in every command ----------

_WORKSPACE_COMMANDS = {"export", "optimize", "convert-fp16", "quantize-int8", "build-trt", "inspect", "bench",
                       "profile", "triton-repo", "serve"}
_JSON_COMMANDS = {"list-models", "info", "doctor", "optimize", "inspect", "bench", "profile", "eval", "loadtest"}
_OLD_NAMES = {"--artifacts", "--out", "--output-dir", "--outdir", "--artifact-dir", "--artifacts-dir"}


def _visible_options() -> dict[str, list]:
    """'command path' -> its options as --help lists them (hidden aliases left out)."""
    root = typer.main.get_command(app)
    out = {}
    for path in _command_paths(root):
        cmd = root
        for name in path:
            cmd = cmd.commands[name]
        if path and not hasattr(cmd, "commands"):
            out[" ".join(path)] = [p for p in cmd.params if p.param_type_name == "option" and not p.hidden]
    return out


def test_every_command_speaks_one_vocabulary():
    options = _visible_options()
    assert len(options) >= 17
    with_workspace, with_json = set(), set()
    for command, params in options.items():
        for p in params:
            names = set(p.opts) | set(p.secondary_opts)
            assert not names & _OLD_NAMES, (command, names)  # old names are hidden aliases at most
            if "--trt-workspace" in names:
                assert command == "build-trt"
            if "--workspace" in names:  # always the artifact folder: a path, never a size
                with_workspace.add(command)
                assert p.type_descriptor.annotation is Path and "artifact folder" in p.help.lower(), (command, p.help)
            if "-o" in names or "--output" in names:  # the output path is -o/--output, both spellings
                assert {"-o", "--output"} <= names and p.type_descriptor.annotation is Path, (command, names)
            if "--json" in names:  # one meaning: a flag that prints JSON on stdout
                with_json.add(command)
                assert p.is_flag and "stdout" in p.help, (command, p.help)
    assert with_workspace == _WORKSPACE_COMMANDS
    assert with_json == _JSON_COMMANDS
    help_text = run_cli("build-trt", "--help", env={"COLUMNS": "200"}).out
    assert "--trt-workspace" in help_text and "--workspace" in help_text and "--artifacts" not in help_text


def test_old_option_forms_get_a_one_line_hint(tmp_path):
    import io
    from contextlib import redirect_stderr

    from acmix_deploy.cli import main

    def run(*argv: str) -> tuple[int, list[str]]:
        err = io.StringIO()
        with redirect_stderr(err), pytest.raises(SystemExit) as exc:
            main(list(argv))
        return exc.value.code, err.getvalue().strip().splitlines()

    for argv, hint in [
        (["build-trt", "--workspace", "4G"], "build-trt --trt-workspace 4G"),
        (["build-trt", "--artifacts", "512MiB"], "build-trt --trt-workspace 512MiB"),
        (["bench", "--workspace", "1024"], "--trt-workspace 1024"),
        (["bench", "--onnx", "m.onnx", "--json", str(tmp_path / "b.json")], f"-o {tmp_path / 'b.json'}"),
        (["eval", "m.onnx", "--data", str(tmp_path), "--json", "r.json"], "-o r.json"),
    ]:
        code, lines = run(*argv)
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and hint in lines[0], (argv, lines)
    assert not (tmp_path / "b.json").exists()
    (tmp_path / "4G").mkdir()  # an existing folder named like a size is a folder
    code, lines = run("inspect", "--workspace", str(tmp_path / "4G"))
    assert code == 2 and len(lines) == 1 and f"no engine artifact in workspace {tmp_path / '4G'}" in lines[0], lines
