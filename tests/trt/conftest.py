"""Fixtures: the tiny ACmix-like export (tests/conftest.py `trained`) in fp32 / fp16 / int8, and the
installed TensorRT flavour."""

from __future__ import annotations

import pytest

from acmix_deploy.errors import AcmixError


@pytest.fixture(scope="session")
def trt_flavour() -> tuple[str, str]:
    """(flavour, version) of the TensorRT that `auto` picks; skips when neither is installed."""
    from acmix_deploy.runners.trt_import import load_trt

    try:
        _, flavour, version = load_trt("auto")
    except AcmixError as exc:
        pytest.skip(f"no TensorRT runtime: {exc}")
    return flavour, version


@pytest.fixture(scope="session")
def onnx_variants(trained, tmp_path_factory) -> dict:
    """fp32, fp16 and int8 versions of the tiny model (verified on held-out digits)."""
    from acmix_deploy.precision.fp16 import convert_fp16
    from acmix_deploy.precision.int8 import quantize_int8

    out = tmp_path_factory.mktemp("variants")
    fp16 = convert_fp16(trained.onnx_path, out / "tiny.fp16.onnx", data=trained.heldout_npy, samples=8, holdout=32,
                        record=False)
    int8 = quantize_int8(trained.onnx_path, out / "tiny.int8.onnx", calib_data=trained.heldout_npy, calib_size=64,
                         holdout=64, record=False)
    return {"fp32": trained.onnx_path, "fp16": fp16.path, "int8": int8.path}
