"""eliminate_noops: remove nodes that do not change their input, and what nothing reads.

Exporters leave nodes that compute y = x: Identity (the TorchScript exporter adds one per shared
parameter), Dropout at inference, Reshape to the shape the tensor already has, Transpose with the
identity permutation, a Transpose followed by its inverse, and Cast to the type the tensor
already has. Each costs a copy (or blocks a fusion in ONNX Runtime / TensorRT). A no-op is only
removed when its result is provably the input: shapes must be static where they matter (ONNX
shape inference runs first) and a Dropout's mask output must be unused. Graph outputs keep their
names. Dead nodes and unused initializers go with gs's cleanup().
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from acmix_deploy.passes._graph import (
    bypass,
    constant_value,
    is_onnx_op,
    pinned_names,
    producer,
    rank_of,
    with_inferred_shapes,
)


def _perm(node: gs.Node, rank: int | None) -> tuple[int, ...] | None:
    perm = node.attrs.get("perm")
    if perm is not None:
        return tuple(int(p) for p in perm)
    return tuple(reversed(range(rank))) if rank is not None else None


def _identity_transpose(node: gs.Node) -> gs.Tensor | None:
    x = node.inputs[0]
    perm = _perm(node, rank_of(x))
    return x if perm is not None and perm == tuple(range(len(perm))) else None


def _inverse_transposes(node: gs.Node) -> gs.Tensor | None:
    """T2(T1(x)) with T2 o T1 = identity gives x back (T1 stays if others read it)."""
    first = producer(node.inputs[0])
    if first is None or first.op != "Transpose" or not is_onnx_op(first):
        return None
    x = first.inputs[0]
    rank = rank_of(x)
    p1, p2 = _perm(first, rank), _perm(node, rank)
    if p1 is None or p2 is None or len(p1) != len(p2):
        return None
    return x if tuple(p1[i] for i in p2) == tuple(range(len(p1))) else None


def _identity_reshape(node: gs.Node) -> gs.Tensor | None:
    """Reshape whose target resolves to the input's own shape (0 = copy, one -1 = the rest)."""
    x = node.inputs[0]
    target = constant_value(node.inputs[1]) if len(node.inputs) > 1 else None
    if target is None or x.shape is None or target.ndim != 1 or len(target) != len(x.shape):
        return None
    allowzero = int(node.attrs.get("allowzero", 0))
    unresolved = 0
    for t, d in zip(target.tolist(), x.shape):
        if t == 0 and not allowzero:
            continue
        if t == -1:
            unresolved += 1
            continue
        if not isinstance(d, int) or d != t:
            return None
    return x if unresolved <= 1 else None


def _dropout_in_inference(node: gs.Node, opset: int) -> gs.Tensor | None:
    if len(node.outputs) > 1 and not node.outputs[1].is_empty() and node.outputs[1].outputs:
        return None
    if len(node.inputs) >= 3 and not node.inputs[2].is_empty():
        mode = constant_value(node.inputs[2])
        if mode is None or bool(np.asarray(mode).reshape(-1)[0]):
            return None
    if opset < 7 and int(node.attrs.get("is_test", 0)) == 0:  # before opset 7 Dropout trained by default
        return None
    return node.inputs[0]


def _same_type_cast(node: gs.Node) -> gs.Tensor | None:
    x = node.inputs[0]
    if x.dtype is None or "to" not in node.attrs:
        return None
    try:
        to = onnx.helper.tensor_dtype_to_np_dtype(int(node.attrs["to"]))
    except (KeyError, TypeError, ValueError):
        return None
    return x if np.dtype(x.dtype) == np.dtype(to) else None


RULES: dict[str, Callable[[gs.Node], gs.Tensor | None]] = {
    "Identity": lambda n: n.inputs[0],
    "Reshape": _identity_reshape,
    "Cast": _same_type_cast,
}


def _source(node: gs.Node, opset: int) -> gs.Tensor | None:
    """The tensor this node's (first) output equals, if the node is a no-op."""
    if not is_onnx_op(node) or not node.inputs or not node.outputs or node.inputs[0].is_empty():
        return None
    if node.op == "Transpose":
        return _identity_transpose(node) or _inverse_transposes(node)
    if node.op == "Dropout":
        return _dropout_in_inference(node, opset)
    rule = RULES.get(node.op)
    return rule(node) if rule else None


def eliminate_noops(graph: gs.Graph) -> gs.Graph:
    """Remove identity-like nodes (see module doc), dead nodes and unused initializers."""
    graph = with_inferred_shapes(graph)
    pinned = pinned_names(graph)
    changed = True
    while changed:
        changed = False
        for node in list(graph.nodes):
            if not node.outputs:
                continue
            src = _source(node, graph.opset)
            if src is not None and src is not node.outputs[0] and bypass(node, src, node.outputs[0], pinned):
                changed = True
        graph.cleanup()
    return graph.toposort()
