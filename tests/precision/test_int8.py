"""int8 Q/DQ: what is quantized, TensorRT-compatible Q/DQ, calibration split, gates, numbers."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from acmix_deploy import workspace as ws
from acmix_deploy.errors import AcmixError, ParityError
from acmix_deploy.precision.int8 import plan_int8, quantize_int8


def _quantized_consumers(model: onnx.ModelProto) -> set[str]:
    """Names of nodes that read a DequantizeLinear output."""
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return {n.name for n in model.graph.node if n.op_type != "QuantizeLinear" and any(i in dq_out for i in n.input)}


def test_plan_splits(tiny_onnx):
    model = onnx.load(tiny_onnx)
    ops = {n.name: n for n in model.graph.node}
    grouped = [n for n, node in ops.items() if node.op_type == "Conv"
               and any(a.name == "group" and a.i > 1 for a in node.attribute)]
    att = [n for n, node in ops.items() if node.op_type == "MatMul"
           and not any(i in {x.name for x in model.graph.initializer} for i in node.input)]
    assert len(grouped) == 1 and len(att) == 2  # dep_conv; q @ k and attn @ v
    total = sum(1 for n in ops.values() if n.op_type in ("Conv", "MatMul", "Gemm"))

    no_grouped = plan_int8(model, "no-grouped")
    assert set(no_grouped.exclude) == set(grouped) | set(att)
    assert no_grouped.exclude[grouped[0]] == "grouped conv (dep_conv)"
    assert len(no_grouped.quantize) == total - 3
    assert set(plan_int8(model, "no-attention").exclude) == set(att)
    assert plan_int8(model, "all").exclude == {} and len(plan_int8(model, "all").quantize) == total
    ends = plan_int8(model)  # the default split
    assert len(ends.exclude) == 5 and list(ends.exclude.values()).count("first / last layer") == 2
    first = next(n for n in model.graph.node if "images" in n.input)
    last = next(n for n in model.graph.node if "logits" in n.output)
    assert ends.exclude[first.name] == ends.exclude[last.name] == "first / last layer"
    with pytest.raises(AcmixError, match="unknown int8 split"):
        plan_int8(model, "most")


def test_plan_keeps_the_attention_path_of_deploy_forms(tiny_onnx):
    """Weighted ops inside a deploy form's attention module (P.attention/..., e.g. positional
    projections) stay float under every split but "all"; a name merely containing the word does not."""
    model = onnx.load(tiny_onnx)
    weighted = next(n for n in model.graph.node if n.op_type == "Conv" and "images" not in n.input
                    and not any(a.name == "group" and a.i > 1 for a in n.attribute))  # fmt: skip
    weighted.name = "layer1.0.conv2.attention/Conv_0"
    for split in ("no-attention", "no-grouped", "keep-ends"):
        assert plan_int8(model, split).exclude[weighted.name] == "attention path", split
    assert weighted.name in plan_int8(model, "all").quantize
    weighted.name = "layer1.0.conv2.attentions_like/Conv_0"
    assert weighted.name in plan_int8(model, "no-attention").quantize


def test_int8_trained_model_numbers(trained, artifacts, tmp_path):
    out = tmp_path / "tiny.int8.onnx"
    result = quantize_int8(trained.onnx_path, out, calib_data=trained.heldout_npy, calib_size=128, holdout=256)
    print("\n".join(result.lines()), f"(fp32 model accuracy {trained.accuracy:.3f})")
    r = result.report
    assert trained.accuracy >= 0.85  # the model is really trained, so agreement means something
    assert r.meaningful and r.passed and r.samples == 256
    assert r.top1_agreement >= 0.97 and r.cosine >= 0.999
    m = onnx.load(out)
    inits = {i.name: i for i in m.graph.initializer}
    # TensorRT-compatible Q/DQ: int8 weights, zero points 0, no int32 bias, biases stay float
    for node in m.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            assert inits[node.input[0]].data_type == TensorProto.INT8
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            assert not onnx.numpy_helper.to_array(inits[node.input[2]]).any()
        if node.op_type == "Conv" and len(node.input) > 2:
            assert inits[node.input[2]].data_type in (TensorProto.FLOAT16, TensorProto.FLOAT)
    # Q/DQ only where chosen: the grouped conv and the attention MatMuls read float tensors
    quantized = _quantized_consumers(m)
    assert set(result.plan.quantize) <= quantized
    assert not set(result.plan.exclude) & quantized
    # no Q/DQ on the logits (outputs of quantized ops are not quantized); the logits stay fp32
    producer = next(n for n in m.graph.node if "logits" in n.output)
    assert producer.op_type == "Gemm" and m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    # the float rest runs in fp16: the grouped conv's weight and the attention MatMul inputs
    dep = next(n for n in m.graph.node if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute))
    assert inits[dep.input[1]].data_type == TensorProto.FLOAT16
    assert json.loads({p.key: p.value for p in m.metadata_props}["int8_rest"]) == "fp16"
    # fp16 Q/DQ scales (DequantizeLinear then outputs fp16 for the fp16 conv), valid from opset 19;
    # the quantized convs read DequantizeLinear directly, with no Cast in between
    scales = {inits[n.input[1]].data_type for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    assert scales == {TensorProto.FLOAT16}
    assert next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 19
    producers = {o: n for n in m.graph.node for o in n.output}
    for name in result.plan.quantize:
        node = next(n for n in m.graph.node if n.name == name)
        assert [producers[i].op_type for i in node.input[:2]] == ["DequantizeLinear", "DequantizeLinear"]
    onnx.checker.check_model(m, full_check=True)
    # the recording rule: an output outside the workspace is written, not recorded
    assert not ws.is_inside(out, artifacts) and not (artifacts / "manifest.json").exists()


def test_random_calibration_is_reported_not_gated(tiny_onnx, artifacts, tmp_path):
    out = tmp_path / "r.int8.onnx"
    result = quantize_int8(tiny_onnx, out, calib_data="random", calib_size=8, holdout=8, min_agreement=1.0,
                           method="minmax", rest="fp32")
    assert not result.report.meaningful and result.report.passed and out.exists()
    assert "not meaningful" in result.report.line()
    m = onnx.load(out)  # rest=fp32: no fp16 anywhere
    assert all(i.data_type != TensorProto.FLOAT16 for i in m.graph.initializer)
    assert all(n.op_type != "Cast" for n in m.graph.node)


def test_gate_failure_writes_nothing(trained, artifacts, tmp_path):
    out = tmp_path / "never.int8.onnx"
    with pytest.raises(ParityError, match="nothing written"):
        quantize_int8(trained.onnx_path, out, calib_data=trained.heldout_npy, calib_size=32, holdout=32,
                      min_agreement=1.01, method="minmax")
    assert not out.exists()


def test_bad_calibration_data(tiny_onnx, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(AcmixError, match=r"expected uint8 images \(N, H, W, 3\)"):
        quantize_int8(tiny_onnx, tmp_path / "x.onnx", calib_data=bad)
    with pytest.raises(AcmixError, match="does not exist"):
        quantize_int8(tiny_onnx, tmp_path / "x.onnx", calib_data=tmp_path / "nowhere.npy")
    # option errors come before the calibration data is read (here it does not even exist)
    with pytest.raises(AcmixError, match="unknown calibration method"):
        quantize_int8(tiny_onnx, tmp_path / "x.onnx", calib_data=tmp_path / "nowhere.npy", method="magic")
    with pytest.raises(AcmixError, match="unknown int8 split"):
        quantize_int8(tiny_onnx, tmp_path / "x.onnx", calib_data=tmp_path / "nowhere.npy", split="most")
