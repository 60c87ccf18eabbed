"""`acmix-deploy optimize` end to end: files, workspace, JSON, errors and the failing gate."""

from __future__ import annotations

import re
from pathlib import Path

import onnx
import pytest

from acmix_deploy import workspace as ws
from acmix_deploy.passes import DEFAULT_ORDER, PASSES, PassInfo
from tests.conftest import run_cli
from tests.passes.test_pipeline import corrupting, small_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "tiny.onnx"
    onnx.save(small_model(), str(path))
    return path


def test_json_report_and_output_file(model_file, tmp_path):
    out = tmp_path / "out" / "fast.onnx"
    run = run_cli("optimize", model_file, "-o", out, "--json", "--no-latency")
    assert run.code == 0, run.err
    report = run.json()
    assert report["conv_before"] == 3 and report["conv_after"] == 1
    assert report["ops_after"]["Split"] == 1
    assert report["output"] == str(out) and out.exists()
    assert report["latency"] is None


def test_table_report_with_latency(model_file):
    run = run_cli("optimize", model_file, "--latency-runs", "10", "--skip", "fold_scalars")
    assert run.code == 0, run.err
    text = " ".join(run.out.split())  # rich wraps long cells
    assert re.search(r"│ Conv\s+│\s+3 │\s+1 │", run.out) and re.search(r"Conv nodes │ 3 -> 1 ", text)
    before, after, ratio = map(float, re.search(r"ORT CPU latency │ ([\d.]+) ms -> ([\d.]+) ms, ratio ([\d.]+)", text).groups())
    assert before > 0 and after > 0 and ratio > 0
    err, limit = map(float, re.search(r"PASSED y: max abs (\S+) \(limit (\S+)", text).groups())
    assert err <= limit
    assert (model_file.parent / "tiny.opt.onnx").exists()


def test_workspace_input_is_the_newest_export_and_result_is_recorded(model_file, tmp_path):
    wsdir = tmp_path / "ws"
    exported = ws.default_path("tiny_net", "tiny_net.onnx", wsdir)
    exported.parent.mkdir(parents=True)
    exported.write_bytes(model_file.read_bytes())
    ws.record(ws.ONNX, "tiny_net", exported, workspace=wsdir)
    run = run_cli("optimize", "--workspace", wsdir, "--no-latency")
    assert run.code == 0, run.err
    text = run.out
    assert f"input: {exported.resolve()}" in text
    art = ws.newest(ws.ONNX_OPTIMIZED, model="tiny_net", workspace=wsdir)
    assert Path(art.path) == (exported.parent / "tiny_net.opt.onnx").resolve()
    assert art.meta["passes"] == list(DEFAULT_ORDER)


def test_failing_gate_exits_nonzero_and_writes_nothing(model_file, tmp_path, monkeypatch):
    monkeypatch.setitem(PASSES, "fold_scalars", PassInfo("fold_scalars", corrupting, "broken"))
    out = tmp_path / "never.onnx"
    code, _, err = run_cli("optimize", model_file, "-o", out, "--no-latency")
    assert code == 3
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
def test_bad_options_are_one_line_errors(model_file, args, message):
    code, _, err = run_cli("optimize", model_file, "--no-latency", *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_file_and_empty_workspace(tmp_path):
    code, _, err = run_cli("optimize", tmp_path / "nope.onnx")
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli("optimize", "--workspace", tmp_path / "empty")
    assert code == 2 and "no onnx artifact" in err


def test_list_passes_through_python_m():
    proc = run_cli("optimize", "--list-passes", fresh=True, cwd=REPO, timeout=120)
    assert proc.code == 0, proc.err
    for name in PASSES:
        assert name in proc.out
