"""fold_scalars on hand-built graphs: folds exact cases, leaves broadcasting near misses alone."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from acmix_deploy.passes import fold_scalars
from tests.passes._helpers import apply, assert_parity, init, make_model, node, ops, rand, vi


def _conv_then(op: str, const: np.ndarray, const_first: bool = False, bias: bool = True):
    ins = ["h", "s"] if not const_first else ["s", "h"]
    nodes = [
        helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["h"], name="blk.dep/Conv_0", pads=[1, 1, 1, 1]),
        helper.make_node(op, ins, ["y"], name="blk/Mul_0"),
    ]
    inits = [init("w", rand(4, 3, 3, 3)), init("s", const)] + ([init("b", rand(4))] if bias else [])
    return make_model(nodes, [vi("x", [2, 3, 5, 5])], [vi("y", None)], inits)


@pytest.mark.parametrize(
    "op, const, const_first, bias",
    [
        ("Mul", np.array([0.7], np.float32), False, True),  # ACmix rate2: Mul by a [1] parameter
        ("Mul", np.array(0.7, np.float32), True, False),  # scalar first, conv without bias
        ("Div", np.array([[[[4.0]]]], np.float32), False, True),  # rank-4 one-element
        ("Mul", rand(1, 4, 1, 1), False, True),  # per output channel
        ("Mul", rand(4, 1, 1), True, True),  # per output channel, rank 3
    ],
    ids=["rate", "scalar-first", "div", "per-channel", "per-channel-rank3"],
)
def test_folds_constant_multiplier_into_conv(op, const, const_first, bias):
    model = _conv_then(op, const, const_first, bias)
    out = apply(fold_scalars, model)
    assert ops(out) == {"Conv": 1}
    assert out.graph.output[0].name == "y"
    assert node(out, "Conv").name == "blk.dep/Conv_0"
    assert_parity(model, out)


@pytest.mark.parametrize(
    "const",
    [rand(1, 1, 5, 5), rand(1, 1, 1, 1, 1), rand(2, 4, 1, 1)],
    ids=["spatial-map", "rank-raising-scalar", "per-sample"],
)
def test_near_miss_broadcasting_constants_are_kept(const):
    model = _conv_then("Mul", const)
    out = apply(fold_scalars, model)
    assert ops(out) == {"Conv": 1, "Mul": 1}
    assert_parity(model, out)


def test_near_miss_conv_output_with_second_reader():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["h"], name="c/Conv_0"),
        helper.make_node("Mul", ["h", "s"], ["m"], name="c/Mul_0"),
        helper.make_node("Add", ["m", "h"], ["y"], name="c/Add_0"),
    ]
    model = make_model(nodes, [vi("x", [1, 3, 4, 4])], [vi("y", None)], [init("w", rand(3, 3, 1, 1)), init("s", np.array([2.0], np.float32))])
    out = apply(fold_scalars, model)
    assert ops(out)["Mul"] == 1
    assert_parity(model, out)


def test_near_miss_non_constant_multiplier():
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], name="c/Conv_0"), helper.make_node("Mul", ["h", "g"], ["y"], name="c/Mul_0")]
    model = make_model(nodes, [vi("x", [1, 3, 4, 4]), vi("g", [1])], [vi("y", None)], [init("w", rand(3, 3, 1, 1))])
    assert ops(apply(fold_scalars, model))["Mul"] == 1


def test_shared_weight_initializer_is_not_modified_in_place():
    """Exporters deduplicate identical initializers: the second conv must keep the original weight."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["h1"], name="a/Conv_0"),
        helper.make_node("Conv", ["x", "w"], ["h2"], name="b/Conv_0", strides=[2, 2]),
        helper.make_node("Mul", ["h1", "s"], ["y1"], name="a/Mul_0"),
    ]
    model = make_model(nodes, [vi("x", [1, 3, 4, 4])], [vi("y1", None), vi("h2", None)],
                       [init("w", rand(3, 3, 1, 1)), init("s", np.array([3.0], np.float32))])
    out = apply(fold_scalars, model)
    assert ops(out) == {"Conv": 2}
    assert [n.input[1] for n in out.graph.node if n.name == "b/Conv_0"] == ["w"]
    assert_parity(model, out)


@pytest.mark.parametrize("const", [np.array([0.5], np.float32), rand(6)], ids=["scalar", "per-column"])
def test_folds_into_matmul_weight(const):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="fc/MatMul_0"), helper.make_node("Mul", ["h", "s"], ["y"], name="fc/Mul_0")]
    model = make_model(nodes, [vi("x", [2, 3, 5])], [vi("y", None)], [init("w", rand(5, 6)), init("s", const)])
    out = apply(fold_scalars, model)
    assert ops(out) == {"MatMul": 1}
    assert_parity(model, out)


def test_near_miss_matmul_per_row_constant():
    """A (K,1)-shaped constant scales rows of the output, not the weight's columns."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="fc/MatMul_0"), helper.make_node("Mul", ["h", "s"], ["y"], name="fc/Mul_0")]
    model = make_model(nodes, [vi("x", [2, 3, 5])], [vi("y", None)], [init("w", rand(5, 6)), init("s", rand(3, 1))])
    assert ops(apply(fold_scalars, model))["Mul"] == 1


@pytest.mark.parametrize("trans_b, with_c", [(0, True), (1, True), (1, False)])
def test_folds_per_column_constant_into_gemm(trans_b, with_c):
    w = rand(6, 5) if trans_b else rand(5, 6)
    ins = ["x", "w"] + (["c"] if with_c else [])
    nodes = [helper.make_node("Gemm", ins, ["h"], name="fc/Gemm_0", transB=trans_b, alpha=0.5),
             helper.make_node("Div", ["h", "s"], ["y"], name="fc/Div_0")]
    inits = [init("w", w), init("s", (np.abs(rand(6)) + 0.5).astype(np.float32))] + ([init("c", rand(6))] if with_c else [])
    model = make_model(nodes, [vi("x", [3, 5])], [vi("y", None)], inits)
    out = apply(fold_scalars, model)
    assert ops(out) == {"Gemm": 1}
    assert_parity(model, out)


def test_scalar_travels_through_layout_ops_and_attention_matmul():
    """softmax(q^T k * scale): the scale lands in the k (or q) projection's weights."""
    nodes = [
        helper.make_node("Conv", ["x", "wq", "bq"], ["q"], name="blk.conv1/Conv_0"),
        helper.make_node("Conv", ["x", "wk", "bk"], ["k"], name="blk.conv2/Conv_1"),
        helper.make_node("Reshape", ["q", "shape"], ["q2"], name="blk/Reshape_0"),
        helper.make_node("Transpose", ["q2"], ["qt"], name="blk/Transpose_0", perm=[0, 2, 1]),
        helper.make_node("Reshape", ["k", "shape"], ["k2"], name="blk/Reshape_1"),
        helper.make_node("MatMul", ["qt", "k2"], ["logits"], name="blk/MatMul_0"),
        helper.make_node("Mul", ["logits", "scale"], ["scaled"], name="blk/Mul_0"),
        helper.make_node("Softmax", ["scaled"], ["y"], name="blk/Softmax_0", axis=-1),
    ]
    inits = [init("wq", rand(4, 3, 1, 1)), init("bq", rand(4)), init("wk", rand(4, 3, 1, 1)), init("bk", rand(4)),
             init("shape", np.array([2, 4, 9], np.int64)), init("scale", np.array(0.5, np.float32))]
    model = make_model(nodes, [vi("x", [2, 3, 3, 3])], [vi("y", None)], inits)
    out = apply(fold_scalars, model)
    assert "Mul" not in ops(out)
    assert_parity(model, out)


def test_near_miss_layout_then_per_channel_constant():
    """Only a 1-element factor commutes with a Reshape; a vector does not travel through it."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["h"], name="c/Conv_0"),
        helper.make_node("Reshape", ["h", "shape"], ["r"], name="c/Reshape_0"),
        helper.make_node("Mul", ["r", "s"], ["y"], name="c/Mul_0"),
    ]
    inits = [init("w", rand(4, 3, 1, 1)), init("shape", np.array([1, 4, 4], np.int64)), init("s", rand(4, 1))]
    model = make_model(nodes, [vi("x", [1, 3, 2, 2])], [vi("y", None)], inits)
    out = apply(fold_scalars, model)
    assert ops(out)["Mul"] == 1
    assert_parity(model, out)


def test_scalar_before_conv_and_matmul_folds_into_their_weights():
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["xs"], name="pre/Mul_0"),
        helper.make_node("Conv", ["xs", "w"], ["y1"], name="c/Conv_0", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["xs", "w2"], ["y2"], name="d/Conv_0"),
    ]
    inits = [init("w", rand(4, 3, 3, 3)), init("w2", rand(2, 3, 1, 1)), init("s", np.array([1.5], np.float32))]
    model = make_model(nodes, [vi("x", [1, 3, 4, 4])], [vi("y1", None), vi("y2", None)], inits)
    out = apply(fold_scalars, model)
    assert ops(out) == {"Conv": 2}
    assert_parity(model, out)


def test_near_miss_scalar_before_conv_with_other_reader():
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["xs"], name="pre/Mul_0"),
        helper.make_node("Conv", ["xs", "w"], ["y1"], name="c/Conv_0"),
        helper.make_node("Relu", ["xs"], ["y2"], name="r/Relu_0"),
    ]
    model = make_model(nodes, [vi("x", [1, 3, 4, 4])], [vi("y1", None), vi("y2", None)],
                       [init("w", rand(4, 3, 1, 1)), init("s", np.array([1.5], np.float32))])
    out = apply(fold_scalars, model)
    assert ops(out)["Mul"] == 1
    assert_parity(model, out)


def test_weights_really_scaled():
    model = _conv_then("Mul", np.array([2.0], np.float32))
    out = apply(fold_scalars, model)
    conv = node(out, "Conv")
    weights = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    orig = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(weights[conv.input[1]], orig["w"] * 2)
    np.testing.assert_array_equal(weights[conv.input[2]], orig["b"] * 2)
