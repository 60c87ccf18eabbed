"""The workspace: relative paths, the one recording rule, the newest model, optimize on optimized input."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import onnx
import pytest

from acmix_deploy import workspace as ws
from acmix_deploy.passes.pipeline import optimize_file
from acmix_deploy.runners.sidecar import stored_onnx_path
from tests.conftest import run_cli
from tests.passes.test_pipeline import small_model


def test_manifest_paths_are_relative_and_follow_a_moved_workspace(tmp_path):
    root = tmp_path / "a" / "artifacts"
    src = ws.default_path("m", "m.onnx", root)
    src.parent.mkdir(parents=True)
    src.write_bytes(b"x")
    fp16 = src.with_name("m.fp16.onnx")
    fp16.write_bytes(b"y")
    ws.record(ws.ONNX, "m", src, workspace=root)
    ws.record(ws.ONNX_FP16, "m", fp16, {"source": str(src)}, workspace=root)
    stored = json.loads((root / "manifest.json").read_text())
    assert [r["path"] for r in stored] == ["m/m.onnx", "m/m.fp16.onnx"] and stored[1]["meta"]["source"] == "m/m.onnx"

    moved = tmp_path / "b" / "artifacts"
    shutil.move(tmp_path / "a", tmp_path / "b")
    art = ws.newest(ws.ONNX_FP16, workspace=moved)
    assert art.path == str((moved / "m" / "m.fp16.onnx").resolve())
    fp32, chain = ws.fp32_source(art, moved)
    assert fp32 is not None and fp32.path == str((moved / "m" / "m.onnx").resolve())
    assert chain == ["m.fp16.onnx", "m.onnx"]


def test_newest_model_is_the_model_of_the_newest_record(tmp_path):
    for i, model in enumerate(("old", "new")):
        f = ws.default_path(model, f"{model}.onnx", tmp_path)
        f.parent.mkdir(parents=True)
        f.write_bytes(b"x")
        ws.record(ws.ENGINE if model == "old" else ws.ONNX, model, f, workspace=tmp_path)
    # an engine of an older model does not win over a newer export of another model
    assert ws.newest_model(tmp_path).model == "new"


def test_sidecar_onnx_path_is_relative_inside_the_workspace_only(tmp_path):
    engine = tmp_path / "ws" / "m" / "m.engine"
    assert stored_onnx_path(tmp_path / "ws" / "m" / "m.fp16.onnx", engine) == "m.fp16.onnx"
    assert stored_onnx_path(tmp_path / "ws" / "other" / "o.onnx", engine) == "../other/o.onnx"
    outside = tmp_path / "elsewhere" / "x.onnx"
    assert stored_onnx_path(outside, engine) == str(outside.resolve())


def test_one_recording_rule_inside_the_workspace_only(tmp_path):
    root = tmp_path / "artifacts"
    src = root / "tiny_net" / "tiny_net.onnx"
    src.parent.mkdir(parents=True)
    onnx.save(small_model(), str(src))
    outside = tmp_path / "out" / "fast.onnx"
    optimize_file(src, outside, workspace=root, latency_runs=0)
    assert outside.exists() and not (root / "manifest.json").exists()  # written, not recorded
    report = optimize_file(src, workspace=root, latency_runs=0)  # default: beside the input, inside
    art = ws.newest(ws.ONNX_OPTIMIZED, workspace=root)
    assert art.path == str(Path(report.output).resolve()) and art.model == "tiny_net"


def test_optimize_on_an_optimized_file_writes_nothing(tmp_path):
    src = tmp_path / "tiny.onnx"
    onnx.save(small_model(), str(src))
    first = optimize_file(src, latency_runs=0)
    assert not first.unchanged and first.nodes_after < first.nodes_before
    again_out = tmp_path / "again.onnx"
    result = run_cli("optimize", first.output, "-o", again_out, "--no-latency")
    assert result.code == 0, result.err
    assert "is already optimized: the passes changed nothing" in result.out and "nothing was written" in result.out
    assert not again_out.exists()


def test_info_of_a_small_checkpoint_uses_its_own_size_without_warnings(tmp_path):
    from acmix_deploy.checkpoint import save_checkpoint
    from acmix_deploy.registry import create_model

    ckpt = save_checkpoint(create_model("resnet_acmix26", width=16, k_att=3, img_size=32, num_classes=10),
                           tmp_path / "best.pth")  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_cli("info", "--checkpoint", ckpt, "--json")
    assert result.code == 0, result.err
    assert result.json()["img_size"] == 32
    assert not [w for w in caught if issubclass(w.category, UserWarning)], [str(w.message) for w in caught]


@pytest.mark.parametrize("args", [["inspect"], ["bench"], ["build-trt", "--runtime", "tensorrt-rtx"]])
def test_commands_without_input_in_an_empty_workspace_say_what_to_do(tmp_path, args):
    result = run_cli(*args, "--workspace", tmp_path)
    assert result.code == 2 and len(result.error_lines()) == 1
    assert "acmix-deploy export --model NAME" in result.err
