"""fold_batchnorm: an inference BatchNormalization right after a Conv becomes part of the Conv.

BN(y) = (y - mean) * s + beta with s = gamma / sqrt(var + eps) is per output channel, and the
Conv is linear, so Conv(x, W * s, (b - mean) * s + beta) computes the same thing with one node
and no extra pass over the activation. Folded when the Conv's output feeds only the BN (another
reader would need the un-normalised values), the BN is in inference mode with constant
parameters and unused mean/var outputs, and the Conv's weight and bias are constants.
Arithmetic is done in float64 and rounded once to the weight dtype.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from acmix_deploy.passes._graph import (
    Namer,
    absorb,
    constant_value,
    is_onnx_op,
    node_module_path,
    pinned_names,
    producer,
    sole_consumer,
)


def _extra_outputs_used(bn: gs.Node, pinned: set[str]) -> bool:
    return any(not t.is_empty() and (t.outputs or t.name in pinned) for t in bn.outputs[1:])


def _fold_one(bn: gs.Node, pinned: set[str], namer: Namer) -> bool:
    if not is_onnx_op(bn) or len(bn.inputs) != 5 or not bn.outputs:
        return False
    if int(bn.attrs.get("training_mode", 0)) != 0 or int(bn.attrs.get("spatial", 1)) != 1:
        return False
    if _extra_outputs_used(bn, pinned):
        return False
    y = bn.inputs[0]
    conv = producer(y)
    if conv is None or conv.op != "Conv" or not is_onnx_op(conv) or sole_consumer(y, pinned) is not bn:
        return False
    params = [constant_value(t) for t in bn.inputs[1:]]
    w = constant_value(conv.inputs[1]) if len(conv.inputs) > 1 else None
    if w is None or any(p is None for p in params):
        return False
    has_bias = len(conv.inputs) > 2 and not conv.inputs[2].is_empty()
    b = constant_value(conv.inputs[2]) if has_bias else np.zeros(w.shape[0], w.dtype)
    if b is None:
        return False
    cout = w.shape[0]
    gamma, beta, mean, var = (np.asarray(p, np.float64).reshape(-1) for p in params)
    if any(p.size not in (1, cout) for p in (gamma, beta, mean, var)):
        return False
    eps = float(bn.attrs.get("epsilon", 1e-5))
    scale = gamma / np.sqrt(var + eps)
    per_out = np.broadcast_to(scale, (cout,)).reshape((cout,) + (1,) * (w.ndim - 1))
    w_new = (w.astype(np.float64) * per_out).astype(w.dtype)
    b_new = ((np.asarray(b, np.float64).reshape(-1) - mean) * scale + beta).astype(w.dtype)
    b_new = np.broadcast_to(b_new, (cout,)).copy()

    base = node_module_path(conv) or conv.name or conv.outputs[0].name
    conv.inputs = [conv.inputs[0], namer.constant(f"{base}.weight", w_new), namer.constant(f"{base}.bias", b_new)]
    absorb(bn, y, bn.outputs[0])
    return True


def fold_batchnorm(graph: gs.Graph) -> gs.Graph:
    """Fold every inference BatchNormalization that directly follows a Conv into that Conv."""
    graph = graph.copy()
    pinned = pinned_names(graph)
    namer = Namer(graph)
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
        _fold_one(bn, pinned, namer)
    graph.cleanup()
    namer.settle(graph)
    return graph.toposort()
