"""acmix_deploy.pipeline: export -> fp16 / int8 -> engine as one library call, on a small registry model."""

from __future__ import annotations

import json

import pytest

from acmix_deploy.errors import AcmixError, ParityError
from acmix_deploy.pipeline import PipelineOptions, build_pipeline
from acmix_deploy.runners.trt_import import _try_import
from tests.conftest import small_overrides

_HAS_TRT = _try_import("tensorrt-rtx")[0] is not None or _try_import("tensorrt")[0] is not None
needs_trt = pytest.mark.skipif(not _HAS_TRT, reason="neither tensorrt nor tensorrt_rtx is installed")


@needs_trt
def test_pipeline_exports_a_registry_model_and_builds(tmp_path):
    """--model: a fresh export with a batch axis (verified against PyTorch), then an fp32 engine."""
    overrides = small_overrides("resnet_acmix26")
    size = overrides.pop("img_size")
    heard: list[str] = []
    result = build_pipeline(
        PipelineOptions(model="resnet_acmix26", img_size=size, overrides=overrides, runtime="tensorrt-rtx",
                        min_batch=1, opt_batch=2, max_batch=4, trt_workspace="256MiB", workspace=tmp_path / "ws",
                        progress=False),
        log=heard.append,
    )
    assert result.export is not None and result.export.batch is None and result.export.optimized
    assert result.onnx == result.export.path and result.onnx.is_relative_to(tmp_path / "ws")
    assert result.fp16 is None and result.int8 is None and result.precision_onnx is None and result.verified
    assert len(result.verification) == 1 and result.verification[0].startswith("PASSED")
    side = json.loads(result.engine.sidecar_path.read_text())
    assert side["precision"] == "fp32" and side["model"] == "resnet_acmix26"
    assert side["profiles"]["images"]["max"] == [4, 3, size, size]
    assert result.engine.path.stat().st_size > 10_000 and result.trt[0] == "tensorrt-rtx"
    assert any(line.startswith("TensorRT: tensorrt-rtx") for line in heard)
    assert any(line.startswith("exported resnet_acmix26 -> ") for line in heard)


@needs_trt
def test_pipeline_fp16_from_an_onnx_file(small_export, tmp_path):
    """--onnx + fp16: the fp16 ONNX is verified against fp32 and the engine is built from it."""
    src = small_export("resnet_acmix26").path  # dynamic batch, optimized
    engine = tmp_path / "out" / "r26.engine"
    result = build_pipeline(PipelineOptions(
        onnx=src, precision="fp16", holdout=4, runtime="tensorrt-rtx", min_batch=1, opt_batch=1, max_batch=2,
        trt_workspace="256MiB", output=engine, workspace=tmp_path / "ws", progress=False,
    ))
    assert result.export is None and result.onnx == src and result.fp16 is not None
    assert result.precision_onnx is not None and result.precision_onnx.name.endswith(".fp16.onnx")
    report = result.fp16.report
    assert report.passed and report.samples == 4 and report.cosine >= 0.999
    assert result.verification == [report.line()] and result.verified
    assert result.engine.path == engine and engine.exists()
    assert json.loads(result.engine.sidecar_path.read_text())["precision"] == "fp16"


def test_pipeline_refuses_before_any_work(small_export, tmp_path):
    """Contradictory options and a failed gate: one-line errors, nothing written."""
    src = small_export("resnet_acmix26").path
    with pytest.raises(AcmixError, match="not both"):
        build_pipeline(PipelineOptions(model="resnet_acmix26", onnx=src))
    with pytest.raises(AcmixError, match="--int8 needs --calib-data"):
        build_pipeline(PipelineOptions(onnx=src, precision="int8"))
    with pytest.raises(AcmixError, match="1 <= --min-batch"):
        build_pipeline(PipelineOptions(onnx=src, min_batch=4, max_batch=2))
    with pytest.raises(AcmixError, match="would overwrite"):
        build_pipeline(PipelineOptions(onnx=src, output=src))
    if _HAS_TRT:
        out = tmp_path / "never.engine"
        with pytest.raises(ParityError, match="FAILED fp16 vs fp32"):
            build_pipeline(PipelineOptions(onnx=src, precision="fp16", min_cosine=1.5, holdout=2,
                                           runtime="tensorrt-rtx", output=out, workspace=tmp_path / "ws"))
        assert not out.exists() and not list((tmp_path / "ws").rglob("*.onnx"))
