"""Engine runner: refusals that need no GPU (forged sidecars, wrong inputs) and GPU parity vs ONNX Runtime."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from acmix_deploy.errors import AcmixError
from acmix_deploy.trt.build import build_engine
from acmix_deploy.runners.gpu import torch_cuda_available
from acmix_deploy.runners.trt_engine import EngineRunner, validate_feeds
from acmix_deploy.runners.sidecar import check_compatible, read_sidecar, sidecar_path


@pytest.fixture(scope="module")
def engine(trt_flavour, trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("runner")
    return build_engine(trained.onnx_path, out / "tiny.engine", min_batch=1, opt_batch=4, max_batch=8,
                        progress=False, record=False)


def _forge(engine, tmp_path, **changes):
    """A copy of the engine whose sidecar says something else."""
    dest = tmp_path / "forged.engine"
    shutil.copy(engine.path, dest)
    data = json.loads(engine.sidecar_path.read_text())
    data.update(changes)
    sidecar_path(dest).write_text(json.dumps(data))
    return dest


def test_refuses_other_flavour(engine, tmp_path, trt_flavour):
    flavour, version = trt_flavour
    other = "tensorrt" if flavour == "tensorrt-rtx" else "tensorrt-rtx"
    forged = _forge(engine, tmp_path, trt_flavour=other)
    with pytest.raises(AcmixError, match=f"engine built with {other} .* cannot run on {flavour} {version}") as info:
        EngineRunner(forged, runtime=flavour)
    assert "\n" not in str(info.value)


def test_refuses_other_version(engine, tmp_path, trt_flavour):
    forged = _forge(engine, tmp_path, trt_version="0.9.0.1")
    with pytest.raises(AcmixError, match="tied to the exact TensorRT version"):
        EngineRunner(forged)


def test_refuses_engine_that_is_not_the_sidecars(engine, tmp_path):
    forged = _forge(engine, tmp_path, engine_sha256="0" * 64)
    with pytest.raises(AcmixError, match="does not match its sidecar"):
        EngineRunner(forged)
    lonely = tmp_path / "lonely.engine"
    shutil.copy(engine.path, lonely)
    with pytest.raises(AcmixError, match="lonely.engine.json is missing"):
        EngineRunner(lonely)
    sidecar_path(lonely).write_text("{not json")
    with pytest.raises(AcmixError, match="is unreadable"):
        EngineRunner(lonely)


def test_refuses_other_compute_capability(engine, tmp_path):
    side = read_sidecar(engine.path)
    flavour, version = side.trt_flavour, side.trt_version
    aot = dataclasses.replace(side, target_compute_capabilities=["8.6", "8.9"], gpu_name=None, gpu_compute_capability=None)
    assert check_compatible(aot, flavour, version, (8, 9)) == []
    with pytest.raises(AcmixError, match=r"targets compute capability 8.6, 8.9; this GPU \(NVIDIA H100\) is 9.0"):
        check_compatible(aot, flavour, version, (9, 0), "NVIDIA H100")
    built = dataclasses.replace(side, trt_flavour="tensorrt", gpu_name="NVIDIA A100", gpu_compute_capability="8.0",
                                target_compute_capabilities=None)
    with pytest.raises(AcmixError, match="rebuild the engine on this machine"):
        check_compatible(built, "tensorrt", version, (9, 0), "NVIDIA H100")
    assert "rebuilding here may be faster" in check_compatible(built, "tensorrt", version, (8, 0), "NVIDIA A30")[0]
    default = dataclasses.replace(side, trt_flavour="tensorrt-rtx", target_compute_capabilities=None, gpu_name=None,
                                  gpu_compute_capability=None)
    with pytest.raises(AcmixError, match="compute capability 8.0 and later"):
        check_compatible(default, "tensorrt-rtx", version, (7, 5))
    # the runner reaches the GPU check only after the GPU-free checks pass
    if not torch_cuda_available():
        forged = _forge(engine, tmp_path, target_compute_capabilities=["7.5"])
        with pytest.raises(AcmixError, match="needs a CUDA GPU"):
            EngineRunner(forged)


def test_validate_feeds(engine):
    side = read_sidecar(engine.path)
    validate_feeds(side, {"images": ((8, 3, 8, 8), "float32")})
    cases = [
        ({"images": ((9, 3, 8, 8), "float32")}, "batch 9 is outside the engine's range 1..8"),
        ({"images": ((2, 3, 16, 16), "float32")}, r"does not match the engine's \(N, 3, 8, 8\)"),
        ({"images": ((2, 3, 8), "float32")}, "does not match"),
        ({"images": ((2, 3, 8, 8), "float16")}, "dtype float16, the engine expects float32"),
        ({"pixels": ((2, 3, 8, 8), "float32")}, "missing images"),
    ]
    for feeds, message in cases:
        with pytest.raises(AcmixError, match=message):
            validate_feeds(side, feeds)


gpu = pytest.mark.skipif(not torch_cuda_available(), reason="needs a CUDA GPU with a CUDA build of torch")


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_matches_onnxruntime(precision, trt_flavour, onnx_variants, trained, tmp_path):
    import onnx
    import torch

    from acmix_deploy.parity import compare, cosine_similarity
    from acmix_deploy.precision.calib import load_images
    from acmix_deploy.preprocess import Preprocessing
    from acmix_deploy.precision.verify import model_logits

    result = build_engine(onnx_variants[precision], tmp_path / "e.engine", min_batch=1, opt_batch=4, max_batch=16,
                          progress=False, record=False)
    runner = EngineRunner(result.path)
    pre = Preprocessing.from_onnx(onnx.load(trained.onnx_path), defaults=True)
    x = load_images(trained.heldout_npy, pre, indices=list(range(16)))
    ref = model_logits(str(trained.onnx_path), x)
    for batch in (1, 5, 16):  # the dynamic batch range, including its ends
        got = runner(torch.from_numpy(x[:batch]).cuda()).float().cpu().numpy()
        if precision == "fp32":  # TF32 may be on: a loose fp32 tolerance, exact top-1
            assert compare(ref[:batch], got, tol=1e-2).passed
        assert cosine_similarity(ref[:batch], got) >= (0.999 if precision != "int8" else 0.99)
        assert (ref[:batch].argmax(1) == got.argmax(1)).mean() >= (1.0 if precision != "int8" else 0.9)
    with pytest.raises(AcmixError, match="outside the engine's range"):
        runner(torch.from_numpy(np.concatenate([x, x[:1]])).cuda())
