"""CLI: build-trt / inspect / convert-fp16 / quantize-int8 end to end, and their one-line errors."""

from __future__ import annotations

import pytest

from acmix_deploy import workspace as ws
from acmix_deploy.runners.trt_import import _try_import
from tests.conftest import parity_numbers, run_cli


def test_build_trt_from_workspace_fp16_then_inspect(trt_flavour, trained, artifacts):
    ws.record(ws.ONNX, "tiny_acmix", trained.onnx_path, workspace=artifacts)
    code, out, err = run_cli("build-trt", "--fp16", "--min-batch", "1", "--opt-batch", "2", "--max-batch", "4",
                             "--trt-workspace", "256MiB")
    assert code == 0, err
    assert f"input: {trained.onnx_path}" in out.replace("\n", "")  # which file was used
    (line,) = [ln for ln in out.splitlines() if ln.startswith("PASSED fp16 vs fp32")]
    numbers = parity_numbers(line)
    assert numbers["cosine"] >= 0.999 and numbers["agreement"] >= 0.95 and numbers["samples"] >= 1
    assert "built fp16 engine for batch 1..4 (opt 2)" in out
    engine = ws.newest(ws.ENGINE, workspace=artifacts)
    assert engine.meta["precision"] == "fp16" and ws.newest(ws.ONNX_FP16, workspace=artifacts)

    code, out, err = run_cli("inspect", engine.path)
    assert code == 0, err
    assert "fp16" in out and "1..4 (opt 2)" in out and trt_flavour[1] in out
    from acmix_deploy.runners.gpu import torch_cuda_available

    if not torch_cuda_available():
        assert "needs the engine deserialised" in out and "CUDA GPU" in out

    shown = run_cli("inspect", engine.path, "--json")
    assert shown.code == 0, shown.err
    side = shown.json()
    assert side["precision"] == "fp16" and side["trt_version"] == trt_flavour[1]
    assert {k: v[0] for k, v in next(iter(side["profiles"].values())).items()} == {"min": 1, "opt": 2, "max": 4}


def test_quantize_and_convert_commands(trained, artifacts, tmp_path):
    out_path = tmp_path / "q.onnx"
    code, out, err = run_cli("quantize-int8", str(trained.onnx_path), "--calib-data", "random", "--calib-size", "8",
                             "--holdout", "8", "--method", "minmax", "-o", str(out_path))
    assert code == 0, err
    assert "not meaningful" in out and out_path.exists()
    assert err.startswith("warning: calibrated and verified on random noise") and "gate was not applied" in err
    code, out, err = run_cli("convert-fp16", str(trained.onnx_path), "--min-cosine", "1.5", "--holdout", "4",
                             "-o", str(tmp_path / "f.onnx"))
    assert code == 3 and err.startswith("error: FAILED fp16 vs fp32") and err.count("\n") == 1
    assert not (tmp_path / "f.onnx").exists()


@pytest.mark.skipif(_try_import("tensorrt")[0] is not None, reason="tensorrt is installed here")
def test_missing_tensorrt_is_one_line(trained):
    code, out, err = run_cli("build-trt", "--onnx", str(trained.onnx_path), "--runtime", "tensorrt")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: tensorrt cannot be imported") and "pip install tensorrt" in err


def test_bad_arguments_are_one_line(trained, tmp_path):
    code, _, err = run_cli("build-trt", "--onnx", str(trained.onnx_path), "--model", "x")
    assert code == 2 and "not both" in err and err.count("\n") == 1
    code, _, err = run_cli("build-trt", "--onnx", str(trained.onnx_path), "--int8")
    assert code == 2 and "--int8 needs --calib-data" in err
    code, _, err = run_cli("build-trt", "--onnx", str(trained.onnx_path), "--runtime", "cuda")
    assert code == 2 and "unknown TensorRT runtime" in err
    code, _, err = run_cli("inspect", str(tmp_path / "none.engine"))
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli("quantize-int8", str(tmp_path / "none.onnx"), "--calib-data", "random")
    assert code == 2 and "does not exist" in err and err.count("\n") == 1
    empty = tmp_path / "ws"
    code, _, err = run_cli("convert-fp16", "--workspace", str(empty))
    assert code == 2 and "no ONNX file or engine recorded in workspace" in err


