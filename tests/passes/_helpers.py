"""Builders for tiny ONNX graphs and an ONNX Runtime parity check shared by the pass tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import TensorProto, helper, numpy_helper

from acmix_deploy import parity
from acmix_deploy.passes.pipeline import to_model

FLOAT = TensorProto.FLOAT
RNG = np.random.default_rng(1234)


def rand(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def init(name: str, values: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(values), name)


def vi(name: str, shape: Sequence[int | str] | None, elem: int = FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: Sequence[TensorProto] = (),
    opset: int = 17,
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)  # fills output shapes left None
    onnx.checker.check_model(model)
    return model


def apply(pass_fn: Callable[[gs.Graph], gs.Graph], model: onnx.ModelProto) -> onnx.ModelProto:
    """Run one pass on a model and export the result (checked by the ONNX checker)."""
    out = to_model(pass_fn(gs.import_onnx(model)), model)
    onnx.checker.check_model(out)
    return out


def ops(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def node(model: onnx.ModelProto, op: str) -> onnx.NodeProto:
    found = [n for n in model.graph.node if n.op_type == op]
    assert len(found) == 1, f"expected one {op}, found {len(found)}"
    return found[0]


def feeds_for(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for inp in model.graph.input:
        dims = [d.dim_value if d.dim_value > 0 else 2 for d in inp.type.tensor_type.shape.dim]
        out[inp.name] = rng.standard_normal(dims).astype(np.float32)
    return out


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def assert_parity(before: onnx.ModelProto, after: onnx.ModelProto, tol: float = parity.FP32_TOL) -> float:
    """Both models give the same outputs on random inputs; returns the largest max-abs difference."""
    feeds = feeds_for(before)
    ref, got = run(before, feeds), run(after, feeds)
    assert list(ref) == list(got), "output names changed"
    worst = 0.0
    for name in ref:
        res = parity.compare(ref[name], got[name], tol, name=name, classify=False)
        assert res.passed, res.line()
        worst = max(worst, res.max_abs)
    return worst
