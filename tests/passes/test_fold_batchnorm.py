"""fold_batchnorm on hand-built graphs."""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from acmix_deploy.passes import fold_batchnorm
from tests.passes._helpers import apply, assert_parity, init, make_model, node, ops, rand, vi


def _bn_inits(c: int, prefix: str = "bn") -> list:
    rng = np.random.default_rng(7)
    return [
        init(f"{prefix}.weight", rand(c)),
        init(f"{prefix}.bias", rand(c)),
        init(f"{prefix}.mean", rand(c)),
        init(f"{prefix}.var", (rng.random(c) + 0.2).astype(np.float32)),
    ]


def _bn(x: str, y: str, prefix: str = "bn", **attrs):
    return helper.make_node("BatchNormalization", [x] + [f"{prefix}.{k}" for k in ("weight", "bias", "mean", "var")],
                            [y], name=f"{prefix}/BatchNormalization_0", **attrs)


def test_folds_bn_after_conv_with_and_without_bias():
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h1"], name="conv1/Conv_0", pads=[1, 1, 1, 1]),
        _bn("h1", "y1", "bn1", epsilon=1e-3),
        helper.make_node("Conv", ["x", "w2"], ["h2"], name="conv2/Conv_0", group=3),
        _bn("h2", "y2", "bn2"),
    ]
    inits = [init("w1", rand(5, 3, 3, 3)), init("b1", rand(5)), init("w2", rand(6, 1, 1, 1))] + _bn_inits(5, "bn1") + _bn_inits(6, "bn2")
    model = make_model(nodes, [vi("x", [2, 3, 6, 6])], [vi("y1", None), vi("y2", None)], inits)
    out = apply(fold_batchnorm, model)
    assert ops(out) == {"Conv": 2}
    assert [o.name for o in out.graph.output] == ["y1", "y2"]
    conv = [n for n in out.graph.node if n.name == "conv1/Conv_0"][0]
    weights = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    # the folded bias equals (b - mean) * gamma / sqrt(var + eps) + beta
    get = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    scale = get["bn1.weight"] / np.sqrt(get["bn1.var"] + 1e-3)
    np.testing.assert_allclose(weights[conv.input[2]], (get["b1"] - get["bn1.mean"]) * scale + get["bn1.bias"], rtol=1e-6)
    assert_parity(model, out)


def test_absent_pattern_bn_after_relu_is_kept():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["h"], name="conv/Conv_0"),
        helper.make_node("Relu", ["h"], ["r"], name="relu/Relu_0"),
        _bn("r", "y"),
    ]
    model = make_model(nodes, [vi("x", [1, 3, 4, 4])], [vi("y", None)], [init("w", rand(4, 3, 1, 1))] + _bn_inits(4))
    out = apply(fold_batchnorm, model)
    assert ops(out) == {"Conv": 1, "Relu": 1, "BatchNormalization": 1}
    assert_parity(model, out)


def test_near_miss_conv_output_with_second_reader_is_kept():
    """The Conv output also feeds an Add: folding would change what the Add sees."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["h"], name="conv/Conv_0"),
        _bn("h", "b"),
        helper.make_node("Add", ["b", "h"], ["y"], name="add/Add_0"),
    ]
    model = make_model(nodes, [vi("x", [1, 3, 4, 4])], [vi("y", None)], [init("w", rand(4, 3, 1, 1))] + _bn_inits(4))
    out = apply(fold_batchnorm, model)
    assert ops(out)["BatchNormalization"] == 1
    assert_parity(model, out)


def test_near_miss_conv_output_is_graph_output():
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], name="conv/Conv_0"), _bn("h", "y")]
    model = make_model(nodes, [vi("x", [1, 3, 4, 4])], [vi("h", None), vi("y", None)], [init("w", rand(4, 3, 1, 1))] + _bn_inits(4))
    assert ops(apply(fold_batchnorm, model))["BatchNormalization"] == 1


def test_near_miss_non_constant_bn_parameters():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["h"], name="conv/Conv_0"),
        helper.make_node("BatchNormalization", ["h", "gamma", "bn.bias", "bn.mean", "bn.var"], ["y"], name="bn/BN"),
    ]
    model = make_model(nodes, [vi("x", [1, 3, 4, 4]), vi("gamma", [4])], [vi("y", None)],
                       [init("w", rand(4, 3, 1, 1))] + _bn_inits(4)[1:])
    out = apply(fold_batchnorm, model)
    assert ops(out)["BatchNormalization"] == 1
    assert node(out, "Conv").input[1] == "w"
