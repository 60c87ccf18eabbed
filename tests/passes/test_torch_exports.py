"""The passes on real exporter output: a small ACmix-like torch model exported with the
TorchScript exporter (dynamo=False) and the torch.export-based exporter (dynamo=True)."""

from __future__ import annotations

import warnings
from collections import defaultdict

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from acmix_deploy import parity
from acmix_deploy.passes.pipeline import optimize_model
from tests.passes._helpers import run
from tests.passes._torch_models import MixResNet, export, randomize_bn

SIZE = 32


def _fusable_groups(model: onnx.ModelProto) -> list[list[str]]:
    """Independent check: groups of >= 2 group-1 1x1 Convs with constant weights and equal
    strides/pads/dilations reading one tensor."""
    consts = {t.name for t in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    groups: dict[tuple, list[str]] = defaultdict(list)
    for n in model.graph.node:
        if n.op_type != "Conv" or n.input[1] not in consts:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        w = shapes.get(n.input[1])
        if attrs.get("group", 1) != 1 or w is None or any(k != 1 for k in w[2:]):
            continue
        key = (n.input[0], tuple(attrs.get("strides", [1, 1])), tuple(attrs.get("pads", [0] * 4)),
               tuple(attrs.get("dilations", [1, 1])))
        groups[key].append(n.name)
    return [g for g in groups.values() if len(g) >= 2]


def _bn_after_conv(model: onnx.ModelProto) -> int:
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    return sum(1 for n in model.graph.node if n.op_type == "BatchNormalization" and producers.get(n.input[0]) == "Conv")


@pytest.fixture(scope="module")
def torch_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_bn(MixResNet(layers=(1, 1), width=8, heads=2))


@pytest.fixture(scope="module", params=[False, True], ids=["torchscript", "dynamo"])
def exported(request, torch_model, tmp_path_factory):
    """(dynamo, exported model, optimized model, report), exported and optimized once per exporter."""
    dynamo = request.param
    path = tmp_path_factory.mktemp("export") / "m.onnx"
    if dynamo:
        export(torch_model, str(path), SIZE, dynamo=True)
    else:  # do_constant_folding=False keeps the TorchScript exporter from folding BN itself
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(torch_model, (torch.randn(1, 3, SIZE, SIZE),), str(path), dynamo=False, opset_version=17,
                              do_constant_folding=False, input_names=["images"], output_names=["logits"])
    model = onnx.load(str(path))
    optimized, report = optimize_model(model, latency_runs=0)
    return dynamo, model, optimized, report


def test_exported_model_is_fused_folded_and_matches(torch_model, exported):
    dynamo, model, optimized, report = exported
    assert len(_fusable_groups(model)) == 3  # 2 x (q, k, v) + layer1.0's conv1 with its downsample
    if not dynamo:
        assert _bn_after_conv(model) > 0

    assert _fusable_groups(optimized) == []
    assert _bn_after_conv(optimized) == 0
    assert report.conv_after == report.conv_before - 5
    assert report.ops_after["Mul"] == report.ops_before["Mul"] - 2  # both rate2 folded into dep_conv
    names = [n.name for n in optimized.graph.node]
    qkv = "/layer1/layer1.0/conv2/qkv/Conv_fused" if not dynamo else "layer1.0.conv2.qkv/Conv_fused"
    assert qkv in names
    weights = {t.name: numpy_helper.to_array(t) for t in optimized.graph.initializer}
    fused = next(n for n in optimized.graph.node if n.name == qkv)
    assert weights[fused.input[1]].shape == (24, 8, 1, 1)

    # ORT parity with the unoptimized export and with torch itself
    x = np.random.default_rng(3).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    before, after = run(model, {"images": x})["logits"], run(optimized, {"images": x})["logits"]
    res = parity.compare(before, after, parity.FP32_TOL)
    assert res.passed, res.line()
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(x)).numpy()
    assert parity.compare(ref, after, parity.FP32_TOL).passed
    assert report.parity and all(line.startswith("PASSED") for line in report.parity)


def test_optimized_graph_builds_in_tensorrt_rtx(exported, tmp_path):
    """TensorRT-RTX parses the optimized graph and compiles an engine ahead of time (no GPU needed)."""
    trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed")
    _, _, optimized, _ = exported
    path = tmp_path / "opt.onnx"
    onnx.save(optimized, str(path))
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(path)), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    assert builder.build_serialized_network(network, builder.create_builder_config()) is not None
