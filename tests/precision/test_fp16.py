"""fp16 conversion: block list, range guard, constants, fp32 I/O, parity gate, numbers."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from acmix_deploy import workspace as ws
from acmix_deploy.errors import AcmixError, ParityError
from acmix_deploy.runners import OnnxRuntimeRunner
from acmix_deploy.precision.fp16 import FP16_MAX, Fp16Result, convert_fp16, plan_fp16, to_fp16
from acmix_deploy.precision.typefix import reconcile, validate
from acmix_deploy.parity import judge
from tests.precision.onnx_graphs import (
    big_constant,
    decomposed_layernorm,
    decomposed_softmax,
    dequantize_fp16_scale,
    large_activation,
    shared_bias_layernorm,
)


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    out = {v.name: v.type.tensor_type.elem_type for v in
           list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    out.update({i.name: i.data_type for i in inferred.graph.initializer})
    return out


def _node_input_type(model: onnx.ModelProto, op: str) -> list[int]:
    types = _types(model)
    return [types.get(n.input[0]) for n in model.graph.node if n.op_type == op]


def _out_type(model: onnx.ModelProto, node_name: str) -> int:
    node = next(n for n in model.graph.node if n.name == node_name)
    return _types(model)[node.output[0]]


def _round_trips(model: onnx.ModelProto) -> list[str]:
    """Casts fp32 -> fp16 -> fp32 back to back (the converter leaves them between blocked nodes)."""
    types, producer = _types(model), {o: n for n in model.graph.node for o in n.output}
    to = lambda n: next(a.i for a in n.attribute if a.name == "to")  # noqa: E731
    return [
        n.name for n in model.graph.node
        if n.op_type == "Cast" and to(n) == TensorProto.FLOAT and (up := producer.get(n.input[0])) is not None
        and up.op_type == "Cast" and to(up) == TensorProto.FLOAT16 and types.get(up.input[0]) == TensorProto.FLOAT
    ]  # fmt: skip


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    with OnnxRuntimeRunner(model.SerializeToString()) as runner:
        return next(iter(runner.infer(x).values()))


def test_fp16_trained_model_numbers(trained, artifacts, tmp_path):
    out = tmp_path / "tiny.fp16.onnx"
    result = convert_fp16(trained.onnx_path, out, data=trained.heldout_npy, samples=16, holdout=128)
    r = result.report
    print("\n".join(result.lines()))
    assert r.passed and r.samples == 128
    assert r.cosine >= 0.9999 and r.min_cosine >= 0.999
    assert r.top1_agreement >= 0.99
    assert r.max_abs <= 1e-2 * r.ref_scale
    m = onnx.load(out)
    # fp32 in and out (keep_io_types), fp16 weights, the sensitive ops and the logits in fp32
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    inits = {i.name: i.data_type for i in m.graph.initializer}
    conv_w = [inits[n.input[1]] for n in m.graph.node if n.op_type == "Conv"]
    assert conv_w and all(t == TensorProto.FLOAT16 for t in conv_w)
    for op in ("Softmax", "LayerNormalization"):
        assert _node_input_type(m, op) == [TensorProto.FLOAT]
    producer = next(n for n in m.graph.node if "logits" in n.output)
    assert producer.op_type in ("Gemm", "MatMul", "Add")  # computed in fp32, no trailing cast
    assert all(_types(m)[i] == TensorProto.FLOAT for i in producer.input if i)
    meta = {p.key: p.value for p in m.metadata_props}
    assert json.loads(meta["precision"]) == "fp16" and json.loads(meta["input_size"]) == 8
    # the recording rule: an output outside the workspace is written, not recorded
    assert not ws.is_inside(out, artifacts) and not (artifacts / "manifest.json").exists()


def test_decomposed_layernorm_stays_fp32():
    model = decomposed_layernorm()
    x = np.random.default_rng(1).normal(0, 3, (16, 8)).astype(np.float32)
    plan = plan_fp16(model, x)
    ln_nodes = {n.name for n in model.graph.node if n.name.startswith("ln/") and n.name not in ("ln/mul", "ln/add")}
    assert ln_nodes <= {k for k, v in plan.node_block.items() if v == "decomposed LayerNorm"} | {
        n.name for n in model.graph.node if n.op_type in plan.op_block_list
    }
    assert plan.node_block["ln/add_eps"] == "decomposed LayerNorm"
    assert plan.node_block["ln/div"] == "decomposed LayerNorm"
    assert "head/MatMul" in plan.node_block  # output producer
    converted = to_fp16(model, plan)
    types = _types(converted)
    eps = next(n for n in converted.graph.node if n.name == "ln/add_eps")
    assert [types[i] for i in eps.input] == [TensorProto.FLOAT, TensorProto.FLOAT]
    # eps = 1e-12 survives exactly (the converter would have rounded it to fp16 and back)
    init = {i.name: onnx.numpy_helper.to_array(i) for i in converted.graph.initializer}
    assert init[eps.input[1]] == np.float32(1e-12)
    assert _round_trips(converted) == []
    ref, got = _run(model, x), _run(converted, x)
    assert np.abs(got - ref).max() <= 2e-3 * np.abs(ref).max()


def test_decomposed_softmax_stays_fp32():
    model = decomposed_softmax()
    x = np.random.default_rng(4).normal(0, 2, (16, 8)).astype(np.float32)
    plan = plan_fp16(model, x)
    for name in ("sm/max", "sm/sub", "sm/exp", "sm/sum", "sm/div"):
        assert plan.node_block.get(name) == "decomposed softmax", name
    assert "attn/MatMul" not in plan.node_block  # the scores themselves may be fp16
    converted = to_fp16(model, plan)
    for name in ("sm/max", "sm/sub", "sm/exp", "sm/sum", "sm/div"):
        assert _out_type(converted, name) == TensorProto.FLOAT, name
    assert _out_type(converted, "attn/MatMul") == TensorProto.FLOAT16
    assert _round_trips(converted) == []
    ref, got = _run(model, x), _run(converted, x)
    assert np.abs(got - ref).max() <= 2e-3 * np.abs(ref).max()


def test_margin_band_keeps_fp32():
    """An activation between 65504/margin and 65504 stays fp32; the report counts it with that margin."""
    model = large_activation(1e4)
    x = np.random.default_rng(5).uniform(-2.5, 2.5, (8, 8)).astype(np.float32)  # |x*1e4| up to 25000
    plan = plan_fp16(model, x)  # default margin 4: limit 16376
    assert FP16_MAX / 4 < plan.activation_absmax["h"] <= FP16_MAX
    for name in ("big/Mul", "big/Relu"):
        assert "> 65504/4" in plan.node_block[name], name
    assert _out_type(to_fp16(model, plan), "big/Relu") == TensorProto.FLOAT
    assert "big/Relu" not in plan_fp16(model, x, margin=1.0).node_block  # fits fp16 itself
    wide = plan_fp16(model, x, margin=8.0)
    assert wide.margin == 8.0
    ref = _run(model, x)
    result = Fp16Result(None, "m", judge(ref, ref, "same", "none", lambda r: True), wide, 0, 4)
    big = sum(v > FP16_MAX / 8 for v in wide.activation_absmax.values())
    assert f"{big} tensors above 65504/8" in result.lines()[1]


def test_range_guard_blocks_large_activations():
    model = large_activation(3e4)
    x = np.random.default_rng(2).uniform(-2.5, 2.5, (8, 8)).astype(np.float32)  # |x*3e4| up to 75000
    guarded = plan_fp16(model, x)
    assert guarded.activation_absmax["h"] > FP16_MAX
    for name in ("big/Mul", "big/Relu", "small/Mul"):
        assert name in guarded.node_block, name
    converted = to_fp16(model, guarded)
    for name in ("big/Mul", "big/Relu", "small/Mul"):
        assert _out_type(converted, name) == TensorProto.FLOAT, name
    ref, got = _run(model, x), _run(converted, x)
    assert np.isfinite(got).all()
    assert np.abs(got - ref).max() <= 1e-3 * np.abs(ref).max()
    # without inputs there is no range information: the large product would be computed in fp16
    unguarded = plan_fp16(model, None)
    assert "big/Relu" not in unguarded.node_block
    assert _out_type(to_fp16(model, unguarded), "big/Relu") == TensorProto.FLOAT16


def test_constants_above_default_clamp_are_kept():
    model = big_constant(1.5e4)
    x = np.random.default_rng(3).uniform(-1, 1, (2, 8)).astype(np.float32)
    plan = plan_fp16(model, x)
    assert plan.constants_over_default_clamp == 1 and plan.constants_beyond_fp16 == 0
    converted = to_fp16(model, plan)
    init = {i.name: onnx.numpy_helper.to_array(i) for i in converted.graph.initializer}
    assert init["c"].dtype == np.float16 and float(init["c"]) == 15000.0  # not clamped to 1e4
    np.testing.assert_allclose(_run(converted, x), x, rtol=2e-3, atol=2e-3)


def test_parity_failure_writes_nothing(tiny_onnx, artifacts, tmp_path):
    out = tmp_path / "never.onnx"
    with pytest.raises(ParityError, match="nothing written"):
        convert_fp16(tiny_onnx, out, min_cosine=1.5, holdout=4, samples=2)  # cosine cannot exceed 1
    assert not out.exists() and not list(tmp_path.glob(".never*"))


def test_bad_inputs_are_one_line(tmp_path):
    with pytest.raises(AcmixError, match="does not exist"):
        convert_fp16(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(AcmixError, match="is not an ONNX model") as info:
        convert_fp16(junk)
    assert "\n" not in str(info.value)


def test_shared_constant_gets_both_types():
    """A constant read by an fp32-blocked LayerNorm and an fp16 Add: every node's inputs agree, the graph
    passes strict inference and ONNX Runtime, and matches fp32."""
    model = shared_bias_layernorm()
    converted = to_fp16(model, plan_fp16(model, None))
    onnx.checker.check_model(converted, full_check=True)
    types = _types(converted)
    add = next(n for n in converted.graph.node if n.name == "proj/Add_0")
    assert [types[i] for i in add.input] == [TensorProto.FLOAT16, TensorProto.FLOAT16]
    ln = next(n for n in converted.graph.node if n.op_type == "LayerNormalization")
    assert {types[i] for i in ln.input} == {TensorProto.FLOAT}
    x = np.random.default_rng(0).normal(0, 1, (4, 8)).astype(np.float32)
    ref, got = _run(model, x), _run(converted, x)
    assert np.abs(got - ref).max() <= 1e-2 * np.abs(ref).max()


def test_reconcile_casts_fixed_type_inputs():
    """Opset 18 DequantizeLinear takes an fp32 scale only: reconcile converts it and casts the now-fp32
    output back to the fp16 MatMul, so the graph loads."""
    model = dequantize_fp16_scale()
    fixed, _ = reconcile(model, set())
    validate(fixed, "test")
    types = _types(fixed)
    dq = next(n for n in fixed.graph.node if n.op_type == "DequantizeLinear")
    mm = next(n for n in fixed.graph.node if n.op_type == "MatMul")
    assert types[dq.input[1]] == TensorProto.FLOAT
    assert [types[i] for i in mm.input] == [TensorProto.FLOAT16, TensorProto.FLOAT16]
    x = np.eye(8, dtype=np.float32)
    want = (np.arange(-32, 32).reshape(8, 8) * 0.01).astype(np.float32)
    np.testing.assert_allclose(_run(fixed, x), want, atol=1e-3)
    with pytest.raises(AcmixError, match="invalid graph"):
        validate(model, "test")


def test_converter_default_block_list_is_kept():
    """Ops the converter keeps fp32 by default (no fp16 kernel in ONNX Runtime: Max, Resize, TopK, ...)
    stay fp32 next to ours: passing our own op_block_list must not replace its defaults."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Max", ["x", "floor"], ["m"], name="clip/Max"),
        helper.make_node("MatMul", ["m", "w"], ["y"], name="head/MatMul"),
    ]
    inits = [numpy_helper.from_array(np.zeros((1, 8), np.float32), "floor"),
             numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w")]  # fmt: skip
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])], inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((4, 8)).astype(np.float32)
    plan = plan_fp16(model, x)
    assert {"Max", "Resize", "TopK", "Softmax"} <= set(plan.op_block_list)
    converted = to_fp16(model, plan)
    assert _out_type(converted, "clip/Max") == TensorProto.FLOAT
    np.testing.assert_allclose(_run(converted, x), _run(model, x), rtol=1e-2, atol=1e-2)
