"""Hand-built ONNX graphs for the fp16 block-list tests (no torch, instant)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _model(nodes, inits, shape=("batch", 8), out_shape=None, opset=18) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape or shape))],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def decomposed_layernorm(dim: int = 8) -> onnx.ModelProto:
    """y = W @ LN(x) written out: ReduceMean -> Sub -> Pow -> ReduceMean -> Add -> Sqrt -> Div -> Mul -> Add."""
    rng = np.random.default_rng(0)
    axes = np.array([-1], np.int64)
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["mu"], name="ln/mean"),
        helper.make_node("Sub", ["x", "mu"], ["xc"], name="ln/sub"),
        helper.make_node("Pow", ["xc", "two"], ["sq"], name="ln/pow"),
        helper.make_node("ReduceMean", ["sq", "axes"], ["var"], name="ln/var"),
        helper.make_node("Add", ["var", "eps"], ["ve"], name="ln/add_eps"),
        helper.make_node("Sqrt", ["ve"], ["sd"], name="ln/sqrt"),
        helper.make_node("Div", ["xc", "sd"], ["xn"], name="ln/div"),
        helper.make_node("Mul", ["xn", "gamma"], ["xg"], name="ln/mul"),
        helper.make_node("Add", ["xg", "beta"], ["ln_out"], name="ln/add"),
        helper.make_node("MatMul", ["ln_out", "w"], ["y"], name="head/MatMul"),
    ]
    graph = helper.make_graph(
        nodes,
        "ln",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [
            numpy_helper.from_array(axes, "axes"),
            numpy_helper.from_array(np.array(2.0, np.float32), "two"),
            numpy_helper.from_array(np.array(1e-12, np.float32), "eps"),
            numpy_helper.from_array(rng.normal(1, 0.1, dim).astype(np.float32), "gamma"),
            numpy_helper.from_array(rng.normal(0, 0.1, dim).astype(np.float32), "beta"),
            numpy_helper.from_array(rng.normal(0, 0.5, (dim, 4)).astype(np.float32), "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model


def large_activation(scale: float = 3e4) -> onnx.ModelProto:
    """y = relu(x * scale) * (1/scale) + x: the intermediate exceeds fp16's 65504 for |x| > 65504/scale."""
    nodes = [
        helper.make_node("Mul", ["x", "big"], ["h"], name="big/Mul"),
        helper.make_node("Relu", ["h"], ["r"], name="big/Relu"),
        helper.make_node("Mul", ["r", "small"], ["s"], name="small/Mul"),
        helper.make_node("Add", ["s", "x"], ["y"], name="out/Add"),
    ]
    return _model(nodes, {"big": scale, "small": 1.0 / scale})


def big_constant(value: float = 1.5e4) -> onnx.ModelProto:
    """y = (x * c) * (1 / c): c is above the converter's default clamp of 1e4 but fits fp16."""
    nodes = [
        helper.make_node("Mul", ["x", "c"], ["a"], name="const/Mul"),
        helper.make_node("Mul", ["a", "inv"], ["y"], name="const/Mul_1"),
    ]
    return _model(nodes, {"c": value, "inv": 1.0 / value})


def shared_bias_layernorm(dim: int = 8) -> onnx.ModelProto:
    """LayerNormalization and a later Add read one deduplicated bias initializer (as in the Swin export):
    the LayerNorm stays fp32, the Add runs in fp16, so the shared constant needs both types."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("LayerNormalization", ["x", "gamma", "zero"], ["ln"], axis=-1, name="norm/LayerNormalization"),
        helper.make_node("MatMul", ["ln", "w1"], ["h"], name="proj/MatMul_0"),
        helper.make_node("Add", ["h", "zero"], ["hb"], name="proj/Add_0"),
        helper.make_node("MatMul", ["hb", "w2"], ["y"], name="head/MatMul_0"),
    ]
    return _model(nodes, {"gamma": rng.normal(1, 0.1, dim), "zero": np.zeros(dim),
                          "w1": rng.normal(0, 0.5, (dim, dim)), "w2": rng.normal(0, 0.5, (dim, dim))})


def dequantize_fp16_scale() -> onnx.ModelProto:
    """Opset-18 DequantizeLinear whose scale was made fp16 (invalid before opset 19) feeding an fp16 MatMul."""
    w = helper.make_tensor("w_q", TensorProto.INT8, [8, 8], list(range(-32, 32)))
    scale = numpy_helper.from_array(np.array(0.01, np.float16), "w_scale")
    nodes = [
        helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16, name="in/Cast"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w"], name="w/DequantizeLinear"),
        helper.make_node("MatMul", ["x16", "w"], ["y16"], name="fc/MatMul_0"),
        helper.make_node("Cast", ["y16"], ["y"], to=TensorProto.FLOAT, name="out/Cast"),
    ]
    graph = helper.make_graph(
        nodes, "dq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])], [w, scale],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def decomposed_softmax(dim: int = 8) -> onnx.ModelProto:
    """y = softmax(x @ W1) @ W2 with the softmax written out: ReduceMax -> Sub -> Exp -> ReduceSum -> Div."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["s"], name="attn/MatMul"),
        helper.make_node("ReduceMax", ["s", "axes"], ["smax"], name="sm/max"),
        helper.make_node("Sub", ["s", "smax"], ["sc"], name="sm/sub"),
        helper.make_node("Exp", ["sc"], ["e"], name="sm/exp"),
        helper.make_node("ReduceSum", ["e", "axes"], ["esum"], name="sm/sum"),
        helper.make_node("Div", ["e", "esum"], ["p"], name="sm/div"),
        helper.make_node("MatMul", ["p", "w2"], ["y"], name="head/MatMul"),
    ]
    graph = helper.make_graph(
        nodes,
        "softmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", dim])],
        [
            numpy_helper.from_array(np.array([-1], np.int64), "axes"),
            numpy_helper.from_array(rng.normal(0, 0.5, (dim, dim)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.normal(0, 0.5, (dim, dim)).astype(np.float32), "w2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model
