"""Shared artifacts for the serving tests: one real zoo export (resnet_acmix26, width 8, k_att 3,
20 px, dynamic batch) and the digits ImageFolder, built once per session; helpers that assert a
server left no process and no listening port behind."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from pathlib import Path

import pytest

pytest.importorskip("tritonclient")

TINY = {"width": 8, "k_att": 3, "num_classes": 10}
SIZE = 20
CLASSES = [str(i) for i in range(10)]

needs_server = pytest.mark.skipif(
    importlib.util.find_spec("pytriton") is None, reason="nvidia-pytriton (bundled tritonserver) is not installed"
)

# nvidia-pytriton requires numpy < 2: its python-backend stub (Triton 2.51) crashes on string tensors
# under NumPy 2 (numeric tensors still work there, through DLPack). CI installs the serve extra, so
# these tests run there; a NumPy 2 environment skips them with this reason.
needs_numpy1 = pytest.mark.skipif(
    int(__import__("numpy").__version__.split(".")[0]) >= 2,
    reason="the bundled python-backend stub crashes on string tensors under NumPy 2 (nvidia-pytriton pins numpy<2)",
)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """A verified export of the zoo model; the digits class names are added to its metadata, as a
    checkpoint trained on the digits folder would carry them."""
    import onnx

    from acmix_deploy.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx("resnet_acmix26", img_size=SIZE, dynamic_batch=True, output=str(out), overrides=dict(TINY))
    model = onnx.load(str(out))
    model.metadata_props.add(key="classes", value=json.dumps(CLASSES))
    onnx.save(model, str(out))
    return out


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory) -> Path:
    from acmix_deploy.train.digits import write_digits

    root = tmp_path_factory.mktemp("digits") / "digits"
    write_digits(root, size=16)
    return root


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def ort_logits(path: Path, x):
    from acmix_deploy.runners import OnnxRuntimeRunner, RunnerOptions

    with OnnxRuntimeRunner(path, options=RunnerOptions(threads=1)) as runner:
        return next(iter(runner.infer(x).values()))


def small_onnx(path: Path, batch: int | str = "N", fp16_io: bool = False, classes: list[str] | None = None,
               name: str = "tiny_net") -> Path:
    """A hand-built classifier (Conv -> GlobalAveragePool -> Flatten -> Gemm, 8x8 input) with the
    metadata export writes; `batch` 'N' is a dynamic batch axis; fp16_io casts at both ends."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    io_type = TensorProto.FLOAT16 if fp16_io else TensorProto.FLOAT
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((10, 4)).astype(np.float32), "fc"),
        numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT) if fp16_io else helper.make_node("Identity", ["images"], ["x"]),
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fc_b"], ["l32"], transB=1),
        helper.make_node("Cast", ["l32"], ["logits"], to=TensorProto.FLOAT16) if fp16_io else helper.make_node("Identity", ["l32"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", io_type, [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", io_type, [batch, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"model": name, "input_size": [3, 8, 8], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
            "crop_ratio": 1.0, "interpolation": "bilinear", "num_classes": 10}
    if classes:
        meta["classes"] = classes
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_engine_with_sidecar(path: Path, model: str = "tiny_net", cc: str = "9.0", flavour: str = "tensorrt",
                              batch: tuple[int, int, int] = (1, 8, 16), dtype: str = "float32", onnx_path: Path | None = None) -> Path:
    """A stand-in engine (bytes that are no real engine: config generation never opens it) and a
    sidecar in the format `build-trt` writes, as a TensorRT 10 build on a compute capability `cc` GPU would."""
    from dataclasses import asdict

    from acmix_deploy.runners.sidecar import Sidecar, TensorInfo, sidecar_path

    dims = [-1 if batch[0] != batch[2] else batch[0], 3, 8, 8]
    side = Sidecar(
        model=model, precision="fp16" if dtype == "float16" else "fp32",
        inputs=[TensorInfo("images", dtype, dims)], outputs=[TensorInfo("logits", dtype, [dims[0], 10])],
        profiles={"images": {"min": [batch[0], 3, 8, 8], "opt": [batch[1], 3, 8, 8], "max": [batch[2], 3, 8, 8]}},
        onnx_path=str(onnx_path) if onnx_path else "", onnx_sha256="0" * 64, engine_sha256="0" * 64,
        trt_flavour=flavour, trt_version="10.13.3.9", gpu_name=f"test GPU sm{cc}", gpu_compute_capability=cc,
        target_compute_capabilities=None, build_seconds=1.0, created="2026-12-07T00:00:00Z", toolkit_version="0.1.0",
    )
    path.write_bytes(b"stand-in engine: not a serialized TensorRT plan")
    sidecar_path(path).write_text(json.dumps(asdict(side)))
    return path
