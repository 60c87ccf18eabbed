"""eliminate_noops on hand-built graphs."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from acmix_deploy.passes import eliminate_noops
from tests.passes._helpers import apply, assert_parity, init, make_model, ops, rand, vi


def test_removes_identity_like_nodes_and_unused_initializers():
    nodes = [
        helper.make_node("Identity", ["x"], ["a"], name="Identity_0"),
        helper.make_node("Dropout", ["a"], ["b"], name="drop/Dropout_0"),
        helper.make_node("Reshape", ["b", "same"], ["c"], name="r/Reshape_0"),
        helper.make_node("Transpose", ["c"], ["d"], name="t/Transpose_0", perm=[0, 1, 2, 3]),
        helper.make_node("Transpose", ["d"], ["e"], name="t/Transpose_1", perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["e"], ["f"], name="t/Transpose_2", perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["f"], ["g"], name="c/Cast_0", to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["g", "keep_batch"], ["h"], name="r/Reshape_1"),
        helper.make_node("Relu", ["h"], ["i"], name="relu/Relu_0"),
        helper.make_node("Identity", ["i"], ["y"], name="Identity_1"),
    ]
    inits = [init("same", np.array([2, 3, 4, 5], np.int64)), init("keep_batch", np.array([0, 3, -1, 5], np.int64)),
             init("unused", rand(100))]
    model = make_model(nodes, [vi("x", [2, 3, 4, 5])], [vi("y", [2, 3, 4, 5])], inits, opset=13)
    out = apply(eliminate_noops, model)
    assert ops(out) == {"Relu": 1}
    assert out.graph.output[0].name == "y"  # the graph output keeps its name
    assert [n.input[0] for n in out.graph.node] == ["x"]
    assert not out.graph.initializer
    assert_parity(model, out)


def test_absent_pattern_leaves_graph_unchanged():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sigmoid", ["r"], ["y"])]
    model = make_model(nodes, [vi("x", [1, 4])], [vi("y", None)])
    assert ops(apply(eliminate_noops, model)) == {"Relu": 1, "Sigmoid": 1}


def test_near_misses_are_kept():
    """A real reshape, a non-inverse transpose pair, a dropout whose mask is read, a reshape whose
    target matches a dynamic dim only by value, and an Identity from input straight to output."""
    nodes = [
        helper.make_node("Reshape", ["x", "other"], ["a"], name="r/Reshape_0"),
        helper.make_node("Transpose", ["a"], ["b"], name="t/Transpose_0", perm=[1, 0, 2]),
        helper.make_node("Transpose", ["b"], ["c"], name="t/Transpose_1", perm=[1, 2, 0]),
        helper.make_node("Dropout", ["c"], ["d", "mask"], name="drop/Dropout_0"),
        helper.make_node("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["d", "mask_f"], ["y"]),
        helper.make_node("Reshape", ["z", "fixed"], ["z2"], name="r/Reshape_1"),
        helper.make_node("Identity", ["w"], ["w_out"], name="Identity_0"),
    ]
    inits = [init("other", np.array([4, 5, 6], np.int64)), init("fixed", np.array([2, 3], np.int64))]
    model = make_model(nodes, [vi("x", [2, 3, 4, 5]), vi("z", ["N", 3]), vi("w", [3])],
                       [vi("y", None), vi("z2", None), vi("w_out", None)], inits, opset=13)
    out = apply(eliminate_noops, model)
    assert ops(out) == {"Reshape": 2, "Transpose": 2, "Dropout": 1, "Cast": 1, "Add": 1, "Identity": 1}
    assert_parity(model, out)


def test_training_mode_dropout_is_kept():
    nodes = [helper.make_node("Dropout", ["x", "", "train"], ["y"], name="drop/Dropout_0")]
    model = make_model(nodes, [vi("x", [2, 3])], [vi("y", None)], [init("train", np.array(True))], opset=13)
    assert ops(apply(eliminate_noops, model)) == {"Dropout": 1}
