"""Graph passes on real ACmix models: a plain TorchScript-exporter ONNX of the reference model."""

from __future__ import annotations

import io
from collections import defaultdict

import onnx
import torch

from acmix_deploy.passes.pipeline import optimize_model
from acmix_deploy.registry import create_model

SMALL = dict(width=16, k_att=3, img_size=64, num_classes=10)


def _torchscript_onnx(model: torch.nn.Module, size: int) -> onnx.ModelProto:
    buf = io.BytesIO()
    torch.onnx.export(model, torch.randn(1, 3, size, size), buf, dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["logits"])
    return onnx.load_from_string(buf.getvalue())


def _parallel_1x1_groups(model: onnx.ModelProto) -> list[list[str]]:
    inits = {i.name: i for i in model.graph.initializer}
    by_input = defaultdict(list)
    for n in model.graph.node:
        if n.op_type == "Conv" and n.input[1] in inits and list(inits[n.input[1]].dims[2:]) == [1, 1]:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            key = (n.input[0], tuple(attrs.get("strides", [1, 1])), attrs.get("group", 1))
            by_input[key].append(n.name)
    return [names for names in by_input.values() if len(names) > 1]


def test_fuse_finds_qkv_in_torchscript_export_of_reference_model():
    torch.manual_seed(0)
    model = create_model("resnet_acmix26", **SMALL)
    onnx_model = _torchscript_onnx(model, 64)
    groups_before = _parallel_1x1_groups(onnx_model)
    qkv_groups = [g for g in groups_before if any("conv2/conv1" in n for n in g)]
    assert len(qkv_groups) == 8  # one q/k/v triple per ACmix block
    optimized, report = optimize_model(onnx_model, passes="fuse_parallel_conv1x1", latency_runs=0)
    assert _parallel_1x1_groups(optimized) == []
    assert report.parity and all(line.startswith("PASSED") for line in report.parity)
    convs = lambda m: sum(n.op_type == "Conv" for n in m.graph.node)  # noqa: E731
    # 8 triples -> 8 convs (-16) and layer1.0's conv1 + stride-1 downsample pair (-1)
    assert convs(onnx_model) - convs(optimized) == 17
