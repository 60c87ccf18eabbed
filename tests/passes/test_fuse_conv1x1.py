"""fuse_parallel_conv1x1 on hand-built graphs: fused when exact, untouched on near misses."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from acmix_deploy.passes import fuse_parallel_conv1x1
from acmix_deploy.onnx_names import fused_name, module_path
from tests.passes._helpers import apply, assert_parity, init, make_model, node, ops, rand, vi


def _conv(name: str, x: str, w: str, b: str | None, out: str, **attrs) -> "onnx.NodeProto":  # noqa: F821
    return helper.make_node("Conv", [x, w] + ([b] if b else []), [out], name=name, **attrs)


def _three_parallel(opset: int = 17):
    """ACmix stage I: q, k, v 1x1 convs over one input; k has no bias, v's weight is a Constant node."""
    c = 4
    wv = rand(6, c, 1, 1)
    nodes = [
        _conv("blk.conv1/Conv_0", "x", "wq", "bq", "q"),
        _conv("blk.conv2/Conv_1", "x", "wk", None, "k"),
        helper.make_node("Constant", [], ["wv"], name="blk.conv3/Constant_0", value=numpy_helper.from_array(wv)),
        _conv("blk.conv3/Conv_2", "x", "wv", "bv", "v"),
        helper.make_node("Relu", ["k"], ["k_relu"], name="blk/Relu_0"),
    ]
    inits = [init("wq", rand(4, c, 1, 1)), init("bq", rand(4)), init("wk", rand(4, c, 1, 1)), init("bv", rand(6))]
    return make_model(
        nodes, [vi("x", [1, c, 5, 5])], [vi("q", None), vi("k_relu", None), vi("v", None)], inits, opset=opset
    ), wv


def test_fuses_three_parallel_convs_with_mixed_bias_and_constant_node():
    model, wv = _three_parallel()
    out = apply(fuse_parallel_conv1x1, model)
    assert ops(out) == {"Conv": 1, "Split": 1, "Relu": 1}
    conv = node(out, "Conv")
    assert conv.name == "blk.qkv/Conv_fused"
    assert node(out, "Split").name == "blk.qkv/Split_fused"
    weights = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    w = weights[conv.input[1]]
    assert w.shape == (14, 4, 1, 1)
    np.testing.assert_array_equal(w[8:], wv)
    b = weights[conv.input[2]]
    np.testing.assert_array_equal(b[4:8], np.zeros(4, np.float32))  # k had no bias
    assert [o.name for o in out.graph.output] == ["q", "k_relu", "v"]
    assert assert_parity(model, out) == 0.0


def test_opset_11_uses_split_attribute():
    model, _ = _three_parallel(opset=11)
    out = apply(fuse_parallel_conv1x1, model)
    split = node(out, "Split")
    assert len(split.input) == 1
    assert list(helper.get_attribute_value(split.attribute[[a.name for a in split.attribute].index("split")])) == [4, 4, 6]
    assert_parity(model, out)


def test_absent_pattern_leaves_graph_unchanged():
    """One 1x1 conv and one 3x3 conv on the same input: nothing to fuse."""
    nodes = [
        _conv("a/Conv_0", "x", "w1", None, "y1"),
        _conv("b/Conv_0", "x", "w3", None, "y2", pads=[1, 1, 1, 1]),
    ]
    model = make_model(nodes, [vi("x", [1, 3, 6, 6])], [vi("y1", None), vi("y2", None)],
                       [init("w1", rand(4, 3, 1, 1)), init("w3", rand(4, 3, 3, 3))])
    out = apply(fuse_parallel_conv1x1, model)
    assert ops(out) == {"Conv": 2}
    assert_parity(model, out)


@pytest.mark.parametrize(
    "attrs_a, attrs_b",
    [
        ({"strides": [1, 1]}, {"strides": [2, 2]}),
        ({"group": 2}, {"group": 2}),
        ({}, {"group": 2}),
        ({"pads": [0, 0, 0, 0]}, {"pads": [1, 1, 1, 1]}),
        ({"dilations": [1, 1]}, {"dilations": [2, 2]}),
    ],
    ids=["strides", "both-grouped", "groups", "pads", "dilations"],
)
def test_near_miss_attributes_are_not_fused(attrs_a, attrs_b):
    c = 4
    wa = rand(4, c // attrs_a.get("group", 1), 1, 1)
    wb = rand(4, c // attrs_b.get("group", 1), 1, 1)
    nodes = [_conv("a/Conv_0", "x", "wa", None, "ya", **attrs_a), _conv("b/Conv_0", "x", "wb", None, "yb", **attrs_b)]
    model = make_model(nodes, [vi("x", [1, c, 6, 6])], [vi("ya", None), vi("yb", None)], [init("wa", wa), init("wb", wb)])
    out = apply(fuse_parallel_conv1x1, model)
    assert ops(out) == {"Conv": 2}
    assert_parity(model, out)


def test_non_constant_weight_is_not_fused():
    nodes = [_conv("a/Conv_0", "x", "wa", None, "ya"), _conv("b/Conv_0", "x", "wb", None, "yb")]
    model = make_model(nodes, [vi("x", [1, 4, 3, 3]), vi("wb", [4, 4, 1, 1])], [vi("ya", None), vi("yb", None)],
                       [init("wa", rand(4, 4, 1, 1))])
    assert ops(apply(fuse_parallel_conv1x1, model)) == {"Conv": 2}


def test_resnet_conv1_and_stride1_downsample_fuse_but_stride2_one_does_not():
    """conv1 + downsample.0 (both stride 1) fuse; a third stride-2 1x1 conv on x stays alone."""
    nodes = [
        _conv("layer1.0.conv1/Conv_0", "x", "w1", "b1", "h"),
        _conv("layer1.0.downsample.0/Conv_0", "x", "wd", "bd", "d"),
        _conv("layer1.0.other/Conv_0", "x", "ws", None, "s", strides=[2, 2]),
        helper.make_node("Add", ["h", "d"], ["y"], name="layer1.0/Add_0"),
    ]
    inits = [init("w1", rand(8, 4, 1, 1)), init("b1", rand(8)), init("wd", rand(8, 4, 1, 1)), init("bd", rand(8)),
             init("ws", rand(3, 4, 1, 1))]
    model = make_model(nodes, [vi("x", [2, 4, 6, 6])], [vi("y", None), vi("s", None)], inits)
    out = apply(fuse_parallel_conv1x1, model)
    assert ops(out) == {"Conv": 2, "Split": 1, "Add": 1}
    assert "layer1.0/Conv_fused[conv1,downsample.0]" in [n.name for n in out.graph.node]
    assert_parity(model, out)


def test_fused_conv_of_conv1d():
    nodes = [_conv("m.q/Conv_0", "x", "wa", None, "ya"), _conv("m.k/Conv_0", "x", "wb", "bb", "yb")]
    model = make_model(nodes, [vi("x", [1, 4, 7])], [vi("ya", None), vi("yb", None)],
                       [init("wa", rand(2, 4, 1)), init("wb", rand(3, 4, 1)), init("bb", rand(3))])
    out = apply(fuse_parallel_conv1x1, model)
    assert ops(out) == {"Conv": 1, "Split": 1}
    assert_parity(model, out)


@pytest.mark.parametrize(
    "names, paths, expected",
    [
        (["layer1.0.conv2.conv1/Conv_0", "layer1.0.conv2.conv2/Conv_1", "layer1.0.conv2.conv3/Conv_2"], None,
         "layer1.0.conv2.qkv/Conv_fused"),
        (["/layer1/layer1.0/conv2/conv1/Conv", "/layer1/layer1.0/conv2/conv2/Conv", "/layer1/layer1.0/conv2/conv3/Conv"],
         None, "/layer1/layer1.0/conv2/qkv/Conv_fused"),
        (["/layer1/layer1.0/conv1/Conv", "/layer1/layer1.0/downsample/downsample.0/Conv"], None,
         "/layer1/layer1.0/Conv_fused[conv1,downsample.0]"),
        (["node_conv2d_1", "node_conv2d_2", "node_conv2d_3"], ["blk.conv1", "blk.conv2", "blk.conv3"], "blk.qkv/Conv_fused"),
        (["node_a", "node_b"], None, "Conv_fused[node_a,node_b]"),
        (["m.a/Conv_0", "m.a/Conv_1"], None, "m.a/Conv_fused"),
    ],
)
def test_fused_names_keep_the_module_path(names, paths, expected):
    assert fused_name(names, "Conv", paths) == expected


def test_module_path_parses_both_styles():
    assert module_path("layer3.2.conv2.conv1/Conv_0") == "layer3.2.conv2.conv1"
    assert module_path("/layer1/layer1.0/conv2/conv1/Conv") == "layer1.0.conv2.conv1"
    assert module_path("/stem/Conv") == "stem"
    assert module_path("Conv_12") == ""
