"""Engine builds: fp32 / fp16 / int8 graphs parse and compile (TensorRT-RTX does it without a GPU)."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper

from acmix_deploy import workspace as ws
from acmix_deploy.errors import AcmixError
from acmix_deploy.fileio import sha256_file
from acmix_deploy.runners.trt_import import TENSORRT_RTX, load_trt
from acmix_deploy.trt.build import build_engine, parse_size
from acmix_deploy.runners.sidecar import read_sidecar
from tests.tiny_onnx_models import static_batch_copy


@pytest.fixture(scope="module")
def engines(trt_flavour, onnx_variants, tmp_path_factory):
    out = tmp_path_factory.mktemp("engines")
    return {
        p: build_engine(path, out / f"tiny.{p}.engine", min_batch=1, opt_batch=4, max_batch=16, trt_workspace="256MiB",
                        progress=False, record=False)
        for p, path in onnx_variants.items()
    }


@pytest.fixture(scope="session")
def rtx():
    try:
        return load_trt(TENSORRT_RTX)
    except AcmixError as exc:
        pytest.skip(f"TensorRT-RTX specific: {exc}")


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_builds_and_sidecar_round_trips(engines, onnx_variants, trt_flavour, precision):
    result = engines[precision]
    assert result.path.stat().st_size > 10_000
    print(f"{precision}: built in {result.build_seconds:.2f} s, {result.path.stat().st_size / 1024:.0f} KiB")
    side = read_sidecar(result.path)
    assert side == result.sidecar
    assert side.precision == precision and side.model == "tiny_acmix"
    assert (side.trt_flavour, side.trt_version) == trt_flavour
    assert side.onnx_sha256 == sha256_file(onnx_variants[precision])
    assert side.engine_sha256 == sha256_file(result.path)
    assert side.profiles["images"] == {"min": [1, 3, 8, 8], "opt": [4, 3, 8, 8], "max": [16, 3, 8, 8]}
    assert [(t.name, t.dtype, t.shape) for t in side.inputs] == [("images", "float32", [-1, 3, 8, 8])]
    assert [(t.name, t.dtype, t.shape) for t in side.outputs] == [("logits", "float32", [-1, 10])]
    assert side.batch_range == (1, 4, 16)
    assert side.build_options["strongly_typed"] is True and side.build_options["workspace_bytes"] == 256 * 2**20
    raw = json.loads(result.sidecar_path.read_text())
    assert raw["toolkit_version"] and raw["created"] and raw["build_seconds"] >= 0
    if side.trt_flavour == TENSORRT_RTX:
        assert side.gpu_name is None and side.target_compute_capabilities is None  # default AOT targets


def test_static_batch_fixes_the_profile(trt_flavour, trained, tmp_path):
    static = static_batch_copy(trained.onnx_path, tmp_path / "static.onnx", batch=2)
    result = build_engine(static, tmp_path / "s.engine", min_batch=1, max_batch=64, progress=False, record=False)
    assert result.sidecar.profiles["images"]["min"] == result.sidecar.profiles["images"]["max"] == [2, 3, 8, 8]
    assert any("static-batch ONNX" in n and "batch 2" in n for n in result.notes)


def test_rtx_targets_and_ignored_options(rtx, trained, tmp_path, artifacts):
    cache = tmp_path / "timing.cache"
    result = build_engine(trained.onnx_path, None, compute_capabilities=["8.6", "sm89"], runtime="tensorrt-rtx",
                          timing_cache=cache, opt_level=5, progress=True)
    assert result.sidecar.target_compute_capabilities == ["8.6", "8.9"]
    assert len(result.warnings) == 2 and "timing cache" in result.warnings[0] and "--opt-level" in result.warnings[1]
    assert not cache.exists() and result.sidecar.build_options["opt_level"] is None
    # no -o: the engine lands in the workspace and is recorded as ENGINE
    assert result.path.parent == artifacts / "tiny_acmix" and result.path.name == "tiny_acmix.rtx.engine"
    assert ws.newest(ws.ENGINE, workspace=artifacts).path == str(result.path.resolve())
    with pytest.raises(AcmixError, match="cannot target compute capability 9.0; it knows"):
        build_engine(trained.onnx_path, tmp_path / "h.engine", compute_capabilities=["9.0"], runtime="tensorrt-rtx",
                     progress=False, record=False)


def test_bad_requests_fail_in_one_line(trt_flavour, trained, tmp_path):
    with pytest.raises(AcmixError, match="--min-batch"):
        build_engine(trained.onnx_path, tmp_path / "a.engine", min_batch=8, opt_batch=4, progress=False, record=False)
    with pytest.raises(AcmixError, match="bad size"):
        build_engine(trained.onnx_path, tmp_path / "a.engine", trt_workspace="lots", progress=False, record=False)
    with pytest.raises(AcmixError, match="--opt-level must be 0..5"):
        build_engine(trained.onnx_path, tmp_path / "a.engine", opt_level=9, progress=False, record=False)
    # an op TensorRT does not know: the parser's message, one line, nothing written
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["y"], domain="acmix.test", name="mystery")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    bad = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("acmix.test", 1)]), bad)
    with pytest.raises(AcmixError, match="parser rejected bad.onnx") as info:
        build_engine(bad, tmp_path / "bad.engine", progress=False, record=False)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.glob("bad.engine*"))


def test_parse_size():
    assert parse_size("4GiB") == 4 * 2**30 and parse_size("512MiB") == 512 * 2**20
    assert parse_size("1.5G") == 1_500_000_000 and parse_size("1024") == 1024
