"""fold_scalars: constant multipliers next to a linear op move into that op's constant weights.

ACmix multiplies its two paths by learnt scalars (rate1, rate2), and attention code scales by
1/sqrt(d); each such Mul is an extra pass over an activation. Because Conv, MatMul and Gemm are
linear in their weights, the multiplier can live in the weights instead:

- after:  Mul(Conv(x, W, b), s) -> Conv(x, W*s, b*s); Mul(MatMul(x, W), s) -> MatMul(x, W*s);
          Mul(Gemm(A, B, C), s) -> Gemm(A, B*s, C*s) (or alpha/beta *= s when B is not constant).
          s may be a 1-element constant, or a per-output-channel constant shaped so that it only
          scales output channels (Conv: (C,1,..,1) / (1,C,1,..,1); MatMul/Gemm: (N,) / (1,N)).
          A 1-element s may also travel up through single-reader layout ops (Reshape, Transpose,
          Flatten, Squeeze, Unsqueeze, Identity) and into either operand of a MatMul of two
          activations (attention logits q^T k * scale -> the k projection's weights), since
          all of these commute with a scalar factor.
- before: Conv(Mul(x, s), W) -> Conv(x, W*s) for a 1-element s whose Mul result is read only by
          such linear ops as their data input (zero padding commutes with scaling).
Div by a constant is the Mul by its reciprocal. A fold needs the linear op's output (or the Mul's
result) to have no other reader, and a constant whose rank does not exceed the rank of the
tensor it multiplies, so the broadcast result keeps its shape. Weights are never changed in
place: exporters share identical initializers between unrelated nodes.
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
    rank_of,
    sole_consumer,
    with_inferred_shapes,
)

LAYOUT_OPS = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
LINEAR_OPS = frozenset({"Conv", "MatMul", "Gemm"})


def _factor(node: gs.Node) -> tuple[gs.Tensor, np.ndarray] | None:
    """(variable operand, constant multiplier) of a Mul/Div by a float constant, else None."""
    if node.op not in ("Mul", "Div") or not is_onnx_op(node) or len(node.inputs) != 2 or len(node.outputs) != 1:
        return None
    a, b = node.inputs
    cb, ca = constant_value(b), constant_value(a)
    if node.op == "Div":
        if cb is None or ca is not None or not np.issubdtype(cb.dtype, np.floating) or np.any(cb == 0):
            return None
        return a, 1.0 / cb.astype(np.float64)
    if cb is not None and ca is None:
        var, c = a, cb
    elif ca is not None and cb is None:
        var, c = b, ca
    else:
        return None
    if not np.issubdtype(c.dtype, np.floating):
        return None
    return var, c.astype(np.float64)


def _out_rank(node: gs.Node, tensor: gs.Tensor) -> int | None:
    """Rank of a linear op's output: exact for Conv / Gemm, from inferred shapes otherwise."""
    rank = rank_of(tensor)
    if rank is not None:
        return rank
    if node.op == "Conv":
        w = constant_value(node.inputs[1])
        return None if w is None else w.ndim
    if node.op == "Gemm":
        return 2
    return None


def _weight_slot(node: gs.Node) -> tuple[int, np.ndarray] | None:
    """(input index, value) of the constant weight of a linear op whose data input is variable."""
    if not is_onnx_op(node) or len(node.outputs) != 1:
        return None
    if node.op == "Conv" and len(node.inputs) >= 2:
        w = constant_value(node.inputs[1])
        return (1, w) if w is not None and constant_value(node.inputs[0]) is None else None
    if node.op == "MatMul" and len(node.inputs) == 2:
        a, b = (constant_value(t) for t in node.inputs)
        if b is not None and a is None:
            return 1, b
        if a is not None and b is None:
            return 0, a
        return None
    if node.op == "Gemm" and len(node.inputs) >= 2:
        b = constant_value(node.inputs[1])
        return (1, b) if b is not None and constant_value(node.inputs[0]) is None else None
    return None


def _channel_vector(node: gs.Node, c: np.ndarray, rank: int | None) -> np.ndarray | None:
    """The per-output-channel factors that multiplying the op's output by `c` amounts to.

    Returns a 1-D vector of length 1 (scalar) or #out-channels, or None if `c` does not act
    purely per output channel (or could change the output's shape by broadcasting).
    """
    if c.size == 1:
        if c.ndim == 0 or (rank is not None and c.ndim <= rank):
            return c.reshape(1)
        return None
    if rank is None or c.ndim > rank:
        return None
    shape = (1,) * (rank - c.ndim) + c.shape
    if node.op == "Conv":
        w = constant_value(node.inputs[1])
        if w is None:
            return None
        axis, n = 1, w.shape[0]
    elif node.op == "MatMul":
        slot = _weight_slot(node)
        if slot is None or slot[0] != 1 or slot[1].ndim < 2:
            return None
        axis, n = rank - 1, slot[1].shape[-1]
    elif node.op == "Gemm":
        b = constant_value(node.inputs[1])
        if b is None:
            return None
        axis, n = 1, (b.shape[0] if int(node.attrs.get("transB", 0)) else b.shape[1])
    else:
        return None
    if shape[axis] != n or any(d != 1 for i, d in enumerate(shape) if i != axis):
        return None
    return c.reshape(n)


def _scaled(node: gs.Node, idx: int, values: np.ndarray, namer: Namer) -> gs.Constant:
    base = node_module_path(node) or node.name or node.outputs[0].name
    suffix = {1: "weight", 2: "bias"}.get(idx, f"input{idx}") if node.op != "MatMul" else "weight"
    return namer.constant(f"{base}.{suffix}", values)


def _scale_output(node: gs.Node, vec: np.ndarray, namer: Namer) -> bool:
    """Rewrite linear `node` so that its output is multiplied by per-channel `vec` (len 1 or N)."""
    slot = _weight_slot(node)
    if node.op == "Conv":
        w = slot[1] if slot else None
        if w is None:
            return False
        bias = constant_value(node.inputs[2]) if len(node.inputs) > 2 and not node.inputs[2].is_empty() else None
        if len(node.inputs) > 2 and not node.inputs[2].is_empty() and bias is None:
            return False
        v = np.broadcast_to(vec, (w.shape[0],))
        node.inputs[1] = _scaled(node, 1, (w * v.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype), namer)
        if bias is not None:
            node.inputs[2] = _scaled(node, 2, (bias.astype(np.float64) * v).astype(bias.dtype), namer)
        return True
    if node.op == "MatMul":
        if slot is None or (vec.size > 1 and slot[0] != 1):
            return False
        idx, w = slot
        factor = vec if vec.size > 1 else vec[0]
        node.inputs[idx] = _scaled(node, idx, (w.astype(np.float64) * factor).astype(w.dtype), namer)
        return True
    if node.op == "Gemm":
        has_c = len(node.inputs) > 2 and not node.inputs[2].is_empty()
        c_val = constant_value(node.inputs[2]) if has_c else None
        if slot is None:
            if vec.size > 1:
                return False
            node.attrs["alpha"] = float(node.attrs.get("alpha", 1.0) * vec[0])
            node.attrs["beta"] = float(node.attrs.get("beta", 1.0) * vec[0])
            return True
        if has_c and c_val is None:
            if vec.size > 1:
                return False
            node.attrs["beta"] = float(node.attrs.get("beta", 1.0) * vec[0])
        _, b = slot
        col = vec if vec.size == 1 else (vec.reshape(-1, 1) if int(node.attrs.get("transB", 0)) else vec.reshape(1, -1))
        node.inputs[1] = _scaled(node, 1, (b.astype(np.float64) * col).astype(b.dtype), namer)
        if c_val is not None:
            node.inputs[2] = _scaled(node, 2, (c_val.astype(np.float64) * vec).astype(c_val.dtype), namer)
        return True
    return False


def _scalar_target(tensor: gs.Tensor, pinned: set[str], depth: int = 0) -> gs.Node | None:
    """A linear op with constant weights that `tensor` is a scaled-through image of: reached
    through single-reader layout ops and either operand of a MatMul of two activations, all of
    which commute with a scalar factor (MatMul(a, b) * s = MatMul(a, b * s))."""
    node = producer(tensor)
    if depth > 32 or node is None or not is_onnx_op(node) or sole_consumer(tensor, pinned) is None:
        return None
    if node.op == "Gemm" or (node.op in ("Conv", "MatMul") and _weight_slot(node) is not None):
        return node
    if node.op in LAYOUT_OPS and node.inputs:
        return _scalar_target(node.inputs[0], pinned, depth + 1)
    if node.op == "MatMul" and len(node.inputs) == 2:
        for operand in node.inputs:
            found = _scalar_target(operand, pinned, depth + 1)
            if found is not None:
                return found
    return None


def _fold_after(mul: gs.Node, var: gs.Tensor, c: np.ndarray, pinned: set[str], namer: Namer) -> bool:
    first = producer(var)
    if first is None or sole_consumer(var, pinned) is None:
        return False
    done = False
    if first.op in LINEAR_OPS and is_onnx_op(first):  # per-output-channel factors allowed here
        vec = _channel_vector(first, c, _out_rank(first, var))
        done = vec is not None and _scale_output(first, vec, namer)
    if not done:  # a scalar may travel further up
        if c.size != 1 or (c.ndim > 0 and (var.shape is None or c.ndim > len(var.shape))):
            return False
        target = _scalar_target(var, pinned)
        if target is None or not _scale_output(target, c.reshape(1), namer):
            return False
    absorb(mul, var, mul.outputs[0])
    return True


def _fold_before(mul: gs.Node, x: gs.Tensor, c: np.ndarray, pinned: set[str], namer: Namer) -> bool:
    out = mul.outputs[0]
    if c.size != 1 or out.name in pinned or not out.outputs:
        return False
    readers = list({id(r): r for r in out.outputs}.values())
    plan = []
    for r in readers:
        slot = _weight_slot(r) if r.op in LINEAR_OPS else None
        if slot is None or sum(t is out for t in r.inputs) != 1:
            return False
        w_idx, w = slot
        data_idx = 1 if (r.op == "MatMul" and w_idx == 0) else 0
        if r.inputs[data_idx] is not out:
            return False
        rank = rank_of(x)
        if rank is None and r.op == "Conv":
            rank = w.ndim
        if c.ndim > 0 and (rank is None or c.ndim > rank):
            return False
        plan.append((r, w_idx, w, data_idx))
    for r, w_idx, w, data_idx in plan:
        r.inputs[w_idx] = _scaled(r, w_idx, (w.astype(np.float64) * c.reshape(())).astype(w.dtype), namer)
        r.inputs[data_idx] = x
    mul.inputs.clear()
    mul.outputs.clear()
    return True


def fold_scalars(graph: gs.Graph) -> gs.Graph:
    """Fold constant Mul/Div next to Conv / MatMul / Gemm into their constant weights."""
    graph = with_inferred_shapes(graph)
    pinned = pinned_names(graph)
    namer = Namer(graph)
    changed = True
    while changed:
        changed = False
        for mul in [n for n in graph.nodes if n.op in ("Mul", "Div") and n.outputs]:
            got = _factor(mul)
            if got is not None and (_fold_after(mul, *got, pinned, namer) or _fold_before(mul, *got, pinned, namer)):
                changed = True
        graph.cleanup()
    namer.settle(graph)
    return graph.toposort()
