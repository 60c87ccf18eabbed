"""Small onnx-graphsurgeon helpers shared by the graph passes.

They answer the questions every pass asks (is this tensor a constant and what is its value, who
consumes it, may I rename or remove it) and build names that keep the PyTorch module path of the
nodes they replace, so that per-module profiling still attributes fused nodes correctly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs


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
# names that keep the PyTorch module path
# --------------------------------------------------------------------------------------------

def module_path(node_name: str) -> str | None:
    """The PyTorch module path carried by a node name, or None.

    Two styles are understood: this toolkit's "<module.path>/<Op>_<n>" (e.g.
    "layer1.0.conv2.conv1/Conv_0") and the TorchScript exporter's scope names
    (e.g. "/layer1/layer1.0/conv2/conv1/Conv", where a scope may repeat its parent's path).
    """
    if "/" not in node_name:
        return None
    if node_name.startswith("/"):
        scopes = [s for s in node_name.split("/")[1:-1] if s]
        return _join_scopes(scopes) or None
    return node_name.rsplit("/", 1)[0] or None


def _join_scopes(scopes: Sequence[str]) -> str:
    """TorchScript names a Sequential's child "<attr>.<i>" inside the scope "<attr>": such a scope
    replaces its parent scope's last component instead of extending the path."""
    stack: list[str] = []
    for s in scopes:
        if stack and s.startswith(stack[-1] + "."):
            stack[-1] = s
        else:
            stack.append(s)
    return ".".join(stack)


_QKV_TAILS = ({"conv1", "conv2", "conv3"}, {"q", "k", "v"}, {"q_proj", "k_proj", "v_proj"}, {"query", "key", "value"})


def node_module_path(node: gs.Node) -> str | None:
    """The module path from the node's name or, for names that carry none (the torch.export-based
    exporter's "node_conv2d_3"), from its weight's name ("layer1.0.conv3.weight")."""
    path = module_path(node.name or "")
    if path is None and len(node.inputs) > 1 and node.inputs[1].name.endswith(".weight"):
        path = node.inputs[1].name[: -len(".weight")] or None
    return path


def fused_name(names: Sequence[str], op: str, paths: Sequence[str | None] | None = None) -> str:
    """A name for the node replacing `names` that keeps their longest common module path.

    ACmix stage I (conv1/conv2/conv3 of one block) becomes "<block>.qkv/<op>_fused"; any other
    group becomes "<common prefix>/<op>_fused[<member>,<member>]" so the members stay readable.
    TorchScript-style inputs give TorchScript-style output ("/layer1/layer1.0/conv2/qkv/Conv_fused").
    `paths` overrides the module paths read from the names (see node_module_path). Without a
    module path for every member the name is "<op>_fused[<name>,...]".
    """
    if paths is None:
        paths = [module_path(n) for n in names]
    if any(p is None for p in paths):
        return f"{op}_fused[{','.join(names)}]"
    torchscript = all(n.startswith("/") and module_path(n) == p for n, p in zip(names, paths))
    if len(set(paths)) == 1:  # several nodes of one module
        head = "/" + "/".join(s for s in names[0].split("/")[1:-1] if s) if torchscript else paths[0]
        return f"{head}/{op}_fused"
    parts = [p.split(".") for p in paths]  # type: ignore[union-attr]
    common: list[str] = []
    for comps in zip(*parts):
        if len(set(comps)) != 1:
            break
        common.append(comps[0])
    if len(common) == min(len(p) for p in parts):  # one member's path is a prefix of another's
        common = common[:-1]
    prefix = ".".join(common)
    tails = [".".join(p[len(common):]) for p in parts]
    is_qkv = len(tails) == 3 and all("." not in t for t in tails) and set(tails) in _QKV_TAILS
    if torchscript:
        scopes = _prefix_scopes(names[0], len(common))
        head = "/" + "/".join(scopes) if scopes else ""
        if is_qkv:
            return f"{head}/qkv/{op}_fused"
        return f"{head}/{op}_fused[{','.join(tails)}]"
    if is_qkv:
        return f"{prefix}.qkv/{op}_fused" if prefix else f"qkv/{op}_fused"
    return f"{prefix}/{op}_fused[{','.join(tails)}]" if prefix else f"{op}_fused[{','.join(tails)}]"


def _prefix_scopes(ts_name: str, n_components: int) -> list[str]:
    """The leading TorchScript scopes of `ts_name` that spell at most n module-path components."""
    scopes = [s for s in ts_name.split("/")[1:-1] if s]
    best: list[str] = []
    for k in range(1, len(scopes) + 1):
        if len(_join_scopes(scopes[:k]).split(".")) > n_components:
            break
        best = scopes[:k]
    return best


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
