"""The real models: precision transforms + TensorRT compile.

Skipped without a TensorRT runtime (the `trt_flavour` fixture). Random weights and random
calibration: these check that the graphs convert, verify and compile, not int8 accuracy.
"""

from __future__ import annotations

import pytest

from acmix_deploy import export
from acmix_deploy.precision.fp16 import convert_fp16
from acmix_deploy.precision.int8 import quantize_int8
from acmix_deploy.trt.build import build_engine


# SAN at 64 px needs 3x3 kernels in every stage (stage 4 runs at 2 px); half width keeps CI short.
# Swin-ACmix-T at its own width, window and 224 px, with two blocks in stage 3 instead of six (the same
# block repeated: every export, precision and TensorRT step costs per block).
ZOO_OVERRIDES = {"san_acmix10": {"kernels": [3, 3, 3, 3, 3], "width": 32}, "swin_acmix_t": {"depths": [2, 2, 2, 2]}}


@pytest.mark.slow
@pytest.mark.parametrize("name, img_size", [("resnet_acmix26", 128), ("swin_acmix_t", None), ("san_acmix10", 64),
                                            ("pvt_acmix_t", 64)])
def test_zoo_model_fp16_int8_compile(name, img_size, trt_flavour, tmp_path, artifacts):
    exported = export.export_onnx(name, img_size=img_size, dynamic_batch=True, optimize=True,
                                  output=tmp_path / f"{name}.onnx", workspace=artifacts,
                                  overrides=ZOO_OVERRIDES.get(name))
    fp16 = convert_fp16(exported.path, tmp_path / f"{name}.fp16.onnx", samples=2, holdout=4, record=False)
    assert fp16.report.cosine >= 0.999, fp16.report.line()
    int8 = quantize_int8(exported.path, tmp_path / f"{name}.int8.onnx", calib_data="random", calib_size=8, holdout=4,
                         record=False)
    assert len(int8.plan.quantize) > 10
    reasons = set(int8.plan.exclude.values())
    if not name.startswith("san"):  # SAN's attention math (weight net output x values) has no MatMul
        assert "attention MatMul (two activations)" in reasons or "attention path" in reasons
    if name.startswith("resnet"):
        assert "grouped conv (dep_conv)" in reasons
    if name.startswith("san"):  # the deploy form's conv path is one dense conv: quantized with stage I
        assert any(".sam.conv_path" in n for n in int8.plan.quantize) and any(".sam.qkv" in n for n in int8.plan.quantize)
    for path in (fp16.path, int8.path):
        built = build_engine(path, tmp_path / f"{path.stem}.engine", min_batch=1, opt_batch=2, max_batch=4,
                             progress=False, record=False)
        assert built.path.stat().st_size > 1_000_000
