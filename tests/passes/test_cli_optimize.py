"""`acmix-deploy optimize` end to end: files, workspace, JSON, errors and the failing gate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from acmix_deploy import workspace as ws
from acmix_deploy.cli import main
from acmix_deploy.cli.app import app
from acmix_deploy.passes import DEFAULT_ORDER, PASSES, PassInfo
from tests.passes.test_pipeline import corrupting, small_model

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> int:
    """Run the CLI in-process like the console script; returns the exit code."""
    # Typer runs a lone command without its name; once other commands exist, the name is needed.
    argv = (["optimize"] if len(app.registered_commands) > 1 else []) + list(args)
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "tiny.onnx"
    onnx.save(small_model(), str(path))
    return path


def test_json_report_and_output_file(model_file, tmp_path, capsys):
    out = tmp_path / "out" / "fast.onnx"
    assert cli(str(model_file), "-o", str(out), "--json", "--no-latency") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["conv_before"] == 3 and report["conv_after"] == 1
    assert report["ops_after"]["Split"] == 1
    assert report["output"] == str(out) and out.exists()
    assert report["latency"] is None


def test_table_report_with_latency(model_file, capsys):
    assert cli(str(model_file), "--latency-runs", "10", "--skip", "fold_scalars") == 0
    text = capsys.readouterr().out
    assert "nodes by op type" in text and "Conv nodes" in text and "ORT CPU latency" in text
    assert "PASSED y" in text
    assert (model_file.parent / "tiny.opt.onnx").exists()


def test_workspace_input_is_the_newest_export_and_result_is_recorded(model_file, tmp_path, capsys):
    wsdir = tmp_path / "ws"
    exported = ws.default_path("tiny_net", "tiny_net.onnx", wsdir)
    exported.parent.mkdir(parents=True)
    exported.write_bytes(model_file.read_bytes())
    ws.record(ws.ONNX, "tiny_net", exported, workspace=wsdir)
    assert cli("--workspace", str(wsdir), "--no-latency") == 0
    text = capsys.readouterr().out
    assert f"input: {exported.resolve()}" in text
    art = ws.newest(ws.ONNX_OPTIMIZED, model="tiny_net", workspace=wsdir)
    assert Path(art.path) == (exported.parent / "tiny_net.opt.onnx").resolve()
    assert art.meta["passes"] == list(DEFAULT_ORDER)


def test_failing_gate_exits_nonzero_and_writes_nothing(model_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(PASSES, "fold_scalars", PassInfo("fold_scalars", corrupting, "broken"))
    out = tmp_path / "never.onnx"
    assert cli(str(model_file), "-o", str(out), "--no-latency") == 3
    err = capsys.readouterr().err
    assert err.startswith("error: parity gate failed after pass 'fold_scalars'")
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--passes", "fold_everything"], "unknown pass fold_everything"),
        (["--input-shape", "x:1x2"], "--input-shape expects NAME=DxDx"),
    ],
)
def test_bad_options_are_one_line_errors(model_file, capsys, args, message):
    assert cli(str(model_file), "--no-latency", *args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_file_and_empty_workspace(tmp_path, capsys):
    assert cli(str(tmp_path / "nope.onnx")) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli("--workspace", str(tmp_path / "empty")) == 2
    assert "no onnx artifact" in capsys.readouterr().err


def test_list_passes_through_python_m():
    proc = subprocess.run([sys.executable, "-m", "acmix_deploy.cli", "optimize", "--list-passes"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in PASSES:
        assert name in proc.stdout
