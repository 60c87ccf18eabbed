"""fold_constants on hand-built graphs, including its size rule."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs
from onnx import TensorProto, helper, numpy_helper

from acmix_deploy.passes import fold_constants
from acmix_deploy.passes.fold_constants import GROWTH_FRACTION, SLACK_BYTES, constant_bytes, excluded_outputs
from tests.passes._helpers import apply, assert_parity, init, make_model, ops, rand, vi


def test_folds_shape_arithmetic_and_constant_math():
    """Shape -> Gather -> Concat -> Reshape on a static input, and Pow(8, -0.5) * w, become constants."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"], name="s/Shape_0"),
        helper.make_node("Gather", ["shp", "idx"], ["bc"], name="s/Gather_0", axis=0),
        helper.make_node("Concat", ["bc", "minus1"], ["target"], name="s/Concat_0", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"], name="s/Reshape_0"),
        helper.make_node("Constant", [], ["eight"], name="a/Constant_0", value=numpy_helper.from_array(np.array(8.0, np.float32))),
        helper.make_node("Pow", ["eight", "half"], ["scale"], name="a/Pow_0"),
        helper.make_node("Mul", ["scale", "w"], ["ws"], name="a/Mul_0"),
        helper.make_node("MatMul", ["flat", "ws"], ["y"], name="a/MatMul_0"),
    ]
    inits = [init("idx", np.array([0, 1], np.int64)), init("minus1", np.array([-1], np.int64)),
             init("half", np.array(-0.5, np.float32)), init("w", rand(20, 3))]
    model = make_model(nodes, [vi("x", [2, 4, 4, 5])], [vi("y", None)], inits)
    out = apply(fold_constants, model)
    assert ops(out) == {"Reshape": 1, "MatMul": 1}
    sizes = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    target = [v for v in sizes.values() if v.dtype == np.int64]
    assert [list(t) for t in target] == [[2, 4, -1]]
    assert_parity(model, out)


def test_absent_pattern_leaves_graph_unchanged():
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="c/Conv_0")]
    model = make_model(nodes, [vi("x", [1, 3, 4, 4])], [vi("y", None)], [init("w", rand(2, 3, 1, 1))])
    out = apply(fold_constants, model)
    assert ops(out) == {"Conv": 1}
    assert_parity(model, out)


def _expand_model(elements: int, copies: int = 1):
    """`copies` Expands of a 4-byte constant to (1, elements), each added to the input."""
    nodes, last = [], "x"
    for i in range(copies):
        nodes += [helper.make_node("Expand", ["one", "shape"], [f"big{i}"], name=f"e/Expand_{i}"),
                  helper.make_node("Add", [last, f"big{i}"], [f"s{i}"], name=f"e/Add_{i}")]
        last = f"s{i}"
    nodes.append(helper.make_node("Identity", [last], ["y"], name="e/Identity_0"))
    inits = [init("one", np.array([0.5], np.float32)), init("shape", np.array([1, elements], np.int64))]
    return make_model(nodes, [vi("x", [1, elements])], [vi("y", None)], inits)


def test_size_rule_keeps_an_expand_that_would_inflate_the_file():
    model = _expand_model(SLACK_BYTES // 2)  # 128 KiB of float32 from a 4-byte constant
    out = apply(fold_constants, model)
    assert ops(out)["Expand"] == 1
    assert out.ByteSize() < 4096
    assert_parity(model, out)


def test_size_rule_folds_small_growth_within_the_budget_only_once():
    """Two 40 KiB expansions: the first fits in the 64 KiB budget, the second does not."""
    model = _expand_model(10 << 10, copies=2)
    out = apply(fold_constants, model)
    assert ops(out)["Expand"] == 1
    assert constant_bytes(gs.import_onnx(out)) - constant_bytes(gs.import_onnx(model)) <= SLACK_BYTES
    assert_parity(model, out)


def test_size_rule_folds_a_large_transpose_that_replaces_its_source():
    w = rand(512, 1024)  # 2 MiB
    nodes = [helper.make_node("Transpose", ["w"], ["wt"], name="t/Transpose_0", perm=[1, 0]),
             helper.make_node("MatMul", ["x", "wt"], ["y"], name="t/MatMul_0")]
    model = make_model(nodes, [vi("x", [2, 1024])], [vi("y", None)], [init("w", w)])
    out = apply(fold_constants, model)
    assert ops(out) == {"MatMul": 1}
    assert out.ByteSize() < model.ByteSize() + 1024
    assert_parity(model, out)


def test_size_rule_counts_a_source_that_stays_alive():
    """The weight is also read by a Conv, so its transposed copy would add 1 MiB: not folded."""
    w = rand(256, 1024)
    nodes = [helper.make_node("Transpose", ["w"], ["wt"], name="t/Transpose_0", perm=[1, 0]),
             helper.make_node("MatMul", ["x", "wt"], ["y"], name="t/MatMul_0"),
             helper.make_node("Reshape", ["w", "wshape"], ["w4"], name="t/Reshape_0"),
             helper.make_node("Conv", ["img", "w4"], ["z"], name="t/Conv_0")]
    inits = [init("w", w), init("wshape", np.array([256, 1024, 1, 1], np.int64))]
    model = make_model(nodes, [vi("x", [2, 1024]), vi("img", [1, 1024, 2, 2])], [vi("y", None), vi("z", None)], inits)
    out = apply(fold_constants, model)
    assert ops(out)["Transpose"] == 1
    assert out.ByteSize() < model.ByteSize() + SLACK_BYTES
    assert_parity(model, out)


def test_growth_is_measured_from_the_sources_through_a_chain():
    """Tile x2 twice on a 32 KiB constant: 96 KiB of growth in all, more than the budget allows;
    the first Tile (32 KiB of growth) fits, the second does not."""
    src = rand(8 << 10)
    nodes = [helper.make_node("Tile", ["c", "two"], ["t1"], name="t/Tile_0"),
             helper.make_node("Tile", ["t1", "two"], ["t2"], name="t/Tile_1"),
             helper.make_node("Add", ["x", "t2"], ["y"], name="t/Add_0")]
    model = make_model(nodes, [vi("x", [src.size * 4])], [vi("y", None)], [init("c", src), init("two", np.array([2], np.int64))])
    graph = gs.import_onnx(model).toposort()
    budget = SLACK_BYTES + GROWTH_FRACTION * constant_bytes(graph)
    excluded, _ = excluded_outputs(graph, budget, allow_unknown=False)
    assert excluded == {"t2"}
    out = apply(fold_constants, model)
    assert ops(out) == {"Tile": 1, "Add": 1}
    assert_parity(model, out)
def test_random_nodes_are_never_folded():
    nodes = [helper.make_node("RandomNormal", [], ["r"], name="r/RandomNormal_0", shape=[2, 3], dtype=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "r"], ["y"], name="r/Add_0")]
    model = make_model(nodes, [vi("x", [2, 3])], [vi("y", None)])
    assert ops(apply(fold_constants, model)) == {"RandomNormal": 1, "Add": 1}
