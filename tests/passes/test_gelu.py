"""gelu_fusable: the exported erf-GELU becomes ONNX Runtime's fusable order, bit-exactly; near misses stay."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import helper

from acmix_deploy.passes import gelu_fusable
from tests.passes._helpers import apply, feeds_for, init, make_model, ops, run, vi


def _gelu(scale_op: str = "Div", half: float = 0.5, one: float = 1.0, const_first: bool = True,
          extra_reader: bool = False, other_x: bool = False) -> onnx.ModelProto:
    """y = x * (half * (one + erf(x / sqrt2))), in torch.export's operand order by default."""
    scale = math.sqrt(2.0) if scale_op == "Div" else 1.0 / math.sqrt(2.0)
    inner = ["half", "t"] if const_first else ["t", "half"]
    nodes = [
        helper.make_node(scale_op, ["x", "s"], ["a"], name="mlp.act/Div_0"),
        helper.make_node("Erf", ["a"], ["e"], name="mlp.act/Erf_0"),
        helper.make_node("Add", ["e", "one"], ["t"], name="mlp.act/Add_0"),
        helper.make_node("Mul", inner, ["h"], name="mlp.act/Mul_0"),
        helper.make_node("Mul", ["z" if other_x else "x", "h"], ["y"], name="mlp.act/Mul_1"),
    ]
    outputs = [vi("y", None)]
    if extra_reader:
        nodes.append(helper.make_node("Neg", ["h"], ["h2"], name="other/Neg_0"))
        outputs.append(vi("h2", None))
    inputs = [vi("x", [2, 8, 16])] + ([vi("z", [2, 8, 16])] if other_x else [])
    inits = [init("s", np.array(scale, np.float32)), init("one", np.array([one], np.float32)),
             init("half", np.array(half, np.float32))]
    return make_model(nodes, inputs, outputs, inits)


def _fused_by_ort(model: onnx.ModelProto, tmp_path) -> bool:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "ort_optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return any(n.op_type == "Gelu" for n in onnx.load(opts.optimized_model_filepath).graph.node)


@pytest.mark.parametrize("const_first", [True, False])
def test_exported_gelu_becomes_fusable_and_stays_bit_exact(const_first, tmp_path):
    model = _gelu(const_first=const_first)
    assert not _fused_by_ort(model, tmp_path)  # the exporter's order: five kernels in ONNX Runtime
    out = apply(gelu_fusable, model)
    assert ops(out) == ops(model) and out.graph.output[0].name == "y"
    assert _fused_by_ort(out, tmp_path)
    feeds = feeds_for(model)
    feeds["x"] = feeds["x"] * 4  # reach the tails of erf
    before, after = run(model, feeds)["y"], run(out, feeds)["y"]  # ORT without fusions: same arithmetic
    assert np.array_equal(before, after)


@pytest.mark.parametrize(
    "kwargs",
    [dict(half=0.49), dict(one=2.0), dict(extra_reader=True), dict(other_x=True), dict(scale_op="Mul")],
    ids=["not-half", "not-one", "shared-inner-mul", "different-x", "mul-by-inverse-sqrt2"],
)
def test_near_misses_are_untouched(kwargs):
    model = _gelu(**kwargs)
    out = apply(gelu_fusable, model)
    assert [list(n.input) for n in out.graph.node] == [list(n.input) for n in model.graph.node]


def test_pipeline_keeps_the_gelu_whole_before_a_linear_layer(tmp_path):
    """fold_scalars must not move the GELU's 0.5 into the next MatMul; the default pipeline must leave a
    graph that ONNX Runtime still fuses (also when optimized twice)."""
    from acmix_deploy.passes.pipeline import optimize_model

    base = _gelu()
    graph = base.graph
    graph.node.append(helper.make_node("MatMul", ["y", "w"], ["out"], name="fc2/MatMul_0"))
    graph.initializer.append(init("w", np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)))
    del graph.output[:]
    graph.output.append(vi("out", None))
    model = make_model(list(graph.node), list(graph.input), list(graph.output), list(graph.initializer))
    once, _ = optimize_model(model, latency_runs=0)
    twice, _ = optimize_model(once, latency_runs=0)
    for optimized in (once, twice):
        assert ops(optimized)["Mul"] == 2 and _fused_by_ort(optimized, tmp_path)
