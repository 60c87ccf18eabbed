"""Small onnx-graphsurgeon helpers shared by the graph passes.

They answer the questions every pass asks (is this tensor a constant and what is its value, who
consumes it, may I rename or remove it). Node names are parsed and built by acmix_deploy.onnx_names
(fused nodes keep the PyTorch module path, so per-module profiling still attributes them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from acmix_deploy.onnx_names import module_path_or_weight


def is_onnx_op(node: gs.Node) -> bool:
    """Whether the node is from the default ONNX domain (gs gives None for an unset domain)."""
    return node.domain in (None, "", "ai.onnx")


def constant_value(tensor: gs.Tensor | None) -> np.ndarray | None:
    """The value of an initializer or of a `Constant` node's output (also seen through Identity);
    None for anything else."""
    if tensor is None or tensor.is_empty():
        return None
    if isinstance(tensor, gs.Constant):
        return np.asarray(tensor.values)
    if len(tensor.inputs) != 1:
        return None
    node = tensor.inputs[0]
    if node.op == "Identity" and is_onnx_op(node):
        # The TorchScript exporter shares equal initializers through Identity nodes.
        return constant_value(node.inputs[0])
    if node.op != "Constant" or not is_onnx_op(node) or len(node.attrs) != 1:
        return None
    key, val = next(iter(node.attrs.items()))
    if isinstance(val, gs.Node.AttributeRef):
        return None
    if key == "value" and isinstance(val, gs.Constant):
        return np.asarray(val.values)
    if key == "value_float":
        return np.asarray(val, dtype=np.float32)
    if key == "value_floats":
        return np.asarray(val, dtype=np.float32).reshape(-1)
    if key == "value_int":
        return np.asarray(val, dtype=np.int64)
    if key == "value_ints":
        return np.asarray(val, dtype=np.int64).reshape(-1)
    return None


def producer(tensor: gs.Tensor) -> gs.Node | None:
    return tensor.inputs[0] if len(tensor.inputs) == 1 else None


def pinned_names(graph: gs.Graph) -> set[str]:
    """Tensors whose name and identity a pass must keep: graph inputs/outputs and tensors that
    subgraphs (If/Loop bodies) read from the outer graph, which gs does not list as consumers."""
    names = {t.name for t in graph.inputs} | {t.name for t in graph.outputs}
    for node in graph.nodes:
        for sub in node.subgraphs():
            names.update(sub._foreign_tensors().keys())
    return names


def sole_consumer(tensor: gs.Tensor, pinned: set[str]) -> gs.Node | None:
    """The one node reading `tensor`, if it is the only reader and the tensor is not pinned."""
    if tensor.name in pinned or len(tensor.outputs) != 1:
        return None
    return tensor.outputs[0]


def replace_uses(old: gs.Tensor, new: gs.Tensor, skip: gs.Node | None = None) -> None:
    """Make every consumer of `old` (except `skip`) read `new` instead."""
    for node in list(old.outputs):
        if node is skip:
            continue
        for i, inp in enumerate(node.inputs):
            if inp is old:
                node.inputs[i] = new


def bypass(node: gs.Node, src: gs.Tensor, dst: gs.Tensor, pinned: set[str]) -> bool:
    """Remove a node computing dst = src (an identity): consumers of dst read src instead.

    When dst is pinned (a graph output) its name must survive, so src's producer writes dst
    directly; that is impossible when src is itself pinned or a constant. Returns False then.
    """
    if dst.name in pinned:
        src_node = producer(src)
        if src.name in pinned or isinstance(src, gs.Constant) or src_node is None or src_node.op == "Constant":
            return False
        replace_uses(src, dst, skip=node)
        absorb(node, src, dst)
        return True
    replace_uses(dst, src)
    node.inputs.clear()
    node.outputs.clear()
    return True


def absorb(node: gs.Node, src: gs.Tensor, dst: gs.Tensor) -> None:
    """Remove `node` and let the producer of `src` (one of node's inputs) write node's output `dst`
    in place of `src`, so that dst keeps its name and readers. src is left without a producer:
    the caller makes sure nothing else reads it."""
    src_node = producer(src)
    idx = next(i for i, t in enumerate(src_node.outputs) if t is src)
    node.inputs.clear()
    node.outputs.clear()
    src_node.outputs[idx] = dst


class Namer:
    """Unique names for what a pass creates. New initializers never overwrite existing ones
    (exporters share identical initializers between unrelated nodes), so a folded weight first
    gets "<module>.weight_1"; `settle` renames it to "<module>.weight" once cleanup has removed
    the tensor it replaced."""

    def __init__(self, graph: gs.Graph) -> None:
        self.taken = set(graph.tensors().keys()) | {n.name for n in graph.nodes}
        self.created: list[tuple[gs.Constant, str]] = []

    def name(self, base: str) -> str:
        """`base`, or `base_1`, `base_2` ... so that no node or tensor of the graph (nor an earlier
        name from this Namer) has that name."""
        name, i = base, 0
        while name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name

    def constant(self, base: str, values: np.ndarray) -> gs.Constant:
        const = gs.Constant(self.name(base), np.ascontiguousarray(values))
        self.created.append((const, base))
        return const

    def settle(self, graph: gs.Graph) -> None:
        names = set(graph.tensors().keys())
        for const, base in self.created:
            if const.name != base and const.name in names and base not in names:
                names.discard(const.name)
                const.name = base
                names.add(base)


def int_list(value: Iterable[int] | None, default: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if value is not None else tuple(default)


def rank_of(tensor: gs.Tensor) -> int | None:
    return len(tensor.shape) if tensor.shape is not None else None


# --------------------------------------------------------------------------------------------
# names (parsed and built by acmix_deploy.onnx_names)
# --------------------------------------------------------------------------------------------


def node_module_path(node: gs.Node) -> str | None:
    """The module path of a node (from its name, else from its weight's name; onnx_names)."""
    weight = node.inputs[1].name if len(node.inputs) > 1 else None
    return module_path_or_weight(node.name or "", weight)


# --------------------------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------------------------


def with_inferred_shapes(graph: gs.Graph) -> gs.Graph:
    """A copy of `graph` whose intermediate tensors carry freshly inferred shapes and types.

    Intermediate shapes are cleared first so that a shape a previous rewrite made stale cannot
    conflict; if ONNX shape inference fails (e.g. a custom op), the copy has what it could keep.
    """
    graph = graph.copy()
    io = {t.name for t in graph.inputs} | {t.name for t in graph.outputs}
    for t in graph.tensors().values():
        if isinstance(t, gs.Variable) and t.name not in io:
            t.shape = None
    model = gs.export_onnx(graph, do_type_check=False)
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - inference is an aid, never a requirement
        return graph
    return gs.import_onnx(model)


def nbytes(tensor: gs.Tensor) -> int | None:
    """Byte size of a tensor if its shape and type are static and known."""
    if isinstance(tensor, gs.Constant):
        return int(tensor.values.nbytes)
    if tensor.shape is None or tensor.dtype is None:
        return None
    if any(not isinstance(d, int) or d < 0 for d in tensor.shape):
        return None
    try:
        itemsize = np.dtype(tensor.dtype).itemsize
    except TypeError:
        return None
    return int(np.prod(tensor.shape, dtype=np.int64)) * itemsize
