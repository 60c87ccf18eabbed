"""CLI: build-trt / inspect / convert-fp16 / quantize-int8 end to end, and their one-line errors."""

from __future__ import annotations

import pytest

from acmix_deploy import workspace as ws
from acmix_deploy.cli import main
from acmix_deploy.runners.trt_import import _try_import


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def test_build_trt_from_workspace_fp16_then_inspect(trt_flavour, trained, artifacts, capsys):
    ws.record(ws.ONNX, "tiny_acmix", trained.onnx_path, workspace=artifacts)
    code, out, err = run_cli(
        ["build-trt", "--fp16", "--min-batch", "1", "--opt-batch", "2", "--max-batch", "4", "--trt-workspace", "256MiB"],
        capsys,
    )
    assert code == 0, err
    assert f"input: {trained.onnx_path}" in out.replace("\n", "")  # which file was used
    assert "PASSED fp16 vs fp32" in out and "built fp16 engine for batch 1..4 (opt 2)" in out
    engine = ws.newest(ws.ENGINE, workspace=artifacts)
    assert engine.meta["precision"] == "fp16" and ws.newest(ws.ONNX_FP16, workspace=artifacts)

    code, out, err = run_cli(["inspect", engine.path], capsys)
    assert code == 0, err
    assert "fp16" in out and "1..4 (opt 2)" in out and trt_flavour[1] in out
    from acmix_deploy.runners.gpu import torch_cuda_available

    if not torch_cuda_available():
        assert "needs the engine deserialised" in out and "CUDA GPU" in out

    code, out, _ = run_cli(["inspect", engine.path, "--json"], capsys)
    assert code == 0 and '"precision": "fp16"' in out


def test_quantize_and_convert_commands(trained, artifacts, tmp_path, capsys):
    out_path = tmp_path / "q.onnx"
    code, out, err = run_cli(
        ["quantize-int8", str(trained.onnx_path), "--calib-data", "random", "--calib-size", "8", "--holdout", "8",
         "--method", "minmax", "-o", str(out_path)],
        capsys,
    )
    assert code == 0, err
    assert "not meaningful" in out and out_path.exists()
    assert err.startswith("warning: calibrated and verified on random noise") and "gate was not applied" in err
    code, out, err = run_cli(["convert-fp16", str(trained.onnx_path), "--min-cosine", "1.5", "--holdout", "4",
                              "-o", str(tmp_path / "f.onnx")], capsys)
    assert code == 3 and err.startswith("error: FAILED fp16 vs fp32") and err.count("\n") == 1
    assert not (tmp_path / "f.onnx").exists()


@pytest.mark.skipif(_try_import("tensorrt")[0] is not None, reason="tensorrt is installed here")
def test_missing_tensorrt_is_one_line(trained, capsys):
    code, out, err = run_cli(["build-trt", "--onnx", str(trained.onnx_path), "--runtime", "tensorrt"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: tensorrt cannot be imported") and "pip install tensorrt" in err


def test_bad_arguments_are_one_line(trained, tmp_path, capsys):
    code, _, err = run_cli(["build-trt", "--onnx", str(trained.onnx_path), "--model", "x"], capsys)
    assert code == 2 and "not both" in err and err.count("\n") == 1
    code, _, err = run_cli(["build-trt", "--onnx", str(trained.onnx_path), "--int8"], capsys)
    assert code == 2 and "--int8 needs --calib-data" in err
    code, _, err = run_cli(["build-trt", "--onnx", str(trained.onnx_path), "--runtime", "cuda"], capsys)
    assert code == 2 and "unknown TensorRT runtime" in err
    code, _, err = run_cli(["inspect", str(tmp_path / "none.engine")], capsys)
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(["quantize-int8", str(tmp_path / "none.onnx"), "--calib-data", "random"], capsys)
    assert code == 2 and "does not exist" in err and err.count("\n") == 1
    empty = tmp_path / "ws"
    code, _, err = run_cli(["convert-fp16", "--workspace", str(empty)], capsys)
    assert code == 2 and "no ONNX file or engine recorded in workspace" in err


