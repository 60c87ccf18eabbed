"""ONNX node names: written at export from PyTorch module paths, and parsed back (the one parser).

The torch.export-based exporter records each node's module scope in the node metadata
(``pkg.torch.onnx.name_scopes``: ['', 'layer1', 'layer1.0', ..., '<fx node>']). Nodes are renamed
"<module.path>/<Op>_<n>" (n counts per module path and op type in graph order; the root module's
path is empty, giving "/<Op>_<n>"), so profiles, graph passes and precision rules can tell the
attention path (P.attention), the conv path (P.conv_path) and stage I (P.conv1..3, Swin P.qkv) apart.
Afterwards every exporter metadata entry (stack traces with local file paths, FX node text) is
dropped: the file stays small and byte-identical across runs and machines.

Parsing (`module_path`) reads both this toolkit's names and the TorchScript exporter's scope names
("/layer1/layer1.0/conv2/conv1/Conv"); `fused_name` names what a graph pass fuses so the module path
survives; `engine_layer_node` / `resolve_node` map TensorRT layer and ONNX Runtime node names back to
the exported nodes. The graph passes, profile's block attribution and precision rules all read names
here only (torch-, onnx- and graph-surgeon-free: bench imports it without loading onnx).
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

SCOPE_KEY = "pkg.torch.onnx.name_scopes"


def scope_path(node: onnx.NodeProto) -> str | None:
    """The module path the exporter recorded in a node's metadata, or None when it recorded none."""
    for prop in node.metadata_props:
        if prop.key == SCOPE_KEY:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            if isinstance(scopes, list) and scopes:
                # the last entry names the FX node itself; the one before is the innermost module
                return str(scopes[-2]) if len(scopes) >= 2 else ""
    return None


def _graph_paths(graph: onnx.GraphProto) -> list[str]:
    """Module path per node; nodes without one inherit their first consumer's (else producer's)."""
    paths = [scope_path(n) for n in graph.node]
    producer = {out: i for i, n in enumerate(graph.node) for out in n.output}
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(graph.node):
        for name in n.input:
            consumers.setdefault(name, []).append(i)
    for _ in range(len(paths)):
        missing = [i for i, p in enumerate(paths) if p is None]
        if not missing:
            break
        changed = False
        for i in missing:
            n = graph.node[i]
            around = [j for out in n.output for j in consumers.get(out, [])]
            around += [producer[name] for name in n.input if name in producer]
            found = next((paths[j] for j in around if paths[j] is not None), None)
            if found is not None:
                paths[i], changed = found, True
        if not changed:
            break
    return ["" if p is None else p for p in paths]


def rename_nodes(model: onnx.ModelProto, root: str = "") -> onnx.ModelProto:
    """Rename every node of the main graph to "<module.path>/<Op>_<n>" (in place; returns model).

    `root`: a wrapper's attribute holding the network (e.g. "net"), dropped from every path.
    """
    counters: Counter[tuple[str, str]] = Counter()
    for node, path in zip(model.graph.node, _graph_paths(model.graph)):
        if root and (path == root or path.startswith(root + ".")):
            path = path[len(root) + 1 :]
        key = (path, node.op_type)
        node.name = f"{path}/{node.op_type}_{counters[key]}"
        counters[key] += 1
    return model


def strip_exporter_metadata(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop exporter metadata and doc strings from nodes, values and initializers (in place)."""
    graph = model.graph
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for collection in (graph.input, graph.output, graph.value_info):
        for value in collection:
            del value.metadata_props[:]
            value.doc_string = ""
    for init in graph.initializer:
        del init.metadata_props[:]
        init.doc_string = ""
    del graph.metadata_props[:]
    graph.doc_string = ""
    model.doc_string = ""
    return model


# --------------------------------------------------------------------------------------------------
# parsing names back (the one parser)
# --------------------------------------------------------------------------------------------------
_MODULE_COMPONENT = re.compile(r"^[a-z_0-9][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")


def module_path(name: str) -> str:
    """The PyTorch module path a node name carries; "" for nodes of the root module or without one.

    "layer1.0.conv2.conv1/Conv_0" -> "layer1.0.conv2.conv1" (this toolkit's "<module.path>/<Op>_<n>");
    "/layer1/layer1.0/conv2/conv1/Conv" -> "layer1.0.conv2.conv1" (TorchScript scopes repeat their parent);
    the last component is the op, and parsing stops at the first component that is no module name
    (an op, or what a runtime appended: "x.y/Conv_0/FusedConv").
    """
    parts = [p for p in name.strip().split("/") if p]
    return join_scopes(_leading_modules(parts[:-1]))


def op_of(name: str) -> str:
    """The op type a node name ends with: "x.y/Conv_3" -> "Conv", "/a/b/MatMul" -> "MatMul"."""
    last = name.rstrip("/").split("/")[-1]
    head, _, tail = last.rpartition("_")
    return head if head and tail.isdigit() else last


def _leading_modules(parts: Sequence[str]) -> list[str]:
    out: list[str] = []
    for comp in parts:
        if not _MODULE_COMPONENT.match(comp):
            break
        out.append(comp)
    return out


def join_scopes(scopes: Sequence[str]) -> str:
    """TorchScript names a Sequential's child "<attr>.<i>" inside the scope "<attr>": such a scope
    replaces its parent scope's last component instead of extending the path."""
    stack: list[str] = []
    for s in scopes:
        if stack and s.startswith(stack[-1] + "."):
            stack[-1] = s
        else:
            stack.append(s)
    return ".".join(stack)


def module_path_or_weight(name: str, weight: str | None) -> str | None:
    """The module path of a node's name or, for names that carry none (the torch.export-based
    exporter's "node_conv2d_3"), of its weight ("layer1.0.conv3.weight"); None without either."""
    path = module_path(name) or None
    if path is None and weight and weight.endswith(".weight"):
        path = weight[: -len(".weight")] or None
    return path


_QKV_TAILS = ({"conv1", "conv2", "conv3"}, {"q", "k", "v"}, {"q_proj", "k_proj", "v_proj"}, {"query", "key", "value"})


def fused_name(names: Sequence[str], op: str, paths: Sequence[str | None] | None = None) -> str:
    """A name for the node replacing `names` that keeps their longest common module path.

    ACmix stage I (conv1/conv2/conv3 of one block) becomes "<block>.qkv/<op>_fused"; any other
    group becomes "<common prefix>/<op>_fused[<member>,<member>]" so the members stay readable.
    TorchScript-style inputs give TorchScript-style output ("/layer1/layer1.0/conv2/qkv/Conv_fused").
    `paths` overrides the module paths read from the names (see module_path_or_weight). Without a
    module path for every member the name is "<op>_fused[<name>,...]".
    """
    if paths is None:
        paths = [module_path(n) or None for n in names]
    if any(p is None for p in paths):
        return f"{op}_fused[{','.join(names)}]"
    torchscript = all(n.startswith("/") and (module_path(n) or None) == p for n, p in zip(names, paths))
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
        if len(join_scopes(scopes[:k]).split(".")) > n_components:
            break
        best = scopes[:k]
    return best


_FOREIGN = re.compile(r"ForeignNode\[(.*?)(?:\.\.\.|\])")
_SUFFIXES = ("_kernel_time", "_nchwc", "_fence_before", "_fence_after")


def engine_layer_node(layer: str) -> str:
    """The first ONNX node behind a TensorRT layer name ("a + b", "{ForeignNode[a...b]}")."""
    m = _FOREIGN.search(layer)
    if m:
        return m.group(1).strip()
    return layer.split(" + ")[0].strip()


def resolve_node(name: str, node_names: set[str], producers: dict[str, str]) -> str:
    """Best guess of the original ONNX node behind a runtime node name.

    ONNX Runtime names some rewritten nodes after their output tensor ("<tensor>_nchwc") or appends
    "/<Fusion>/" to the original name; the original graph's node names and tensor producers undo that.
    """
    cur = name
    for _ in range(3):
        if cur in node_names:
            return cur
        stripped = cur
        for suffix in _SUFFIXES:
            if stripped.endswith(suffix):
                stripped = stripped[: -len(suffix)]
        if stripped in node_names:
            return stripped
        if stripped in producers:
            return producers[stripped]
        parts = stripped.rstrip("/").split("/")
        for i in range(len(parts) - 1, 0, -1):
            prefix = "/".join(parts[:i])
            if prefix in node_names:
                return prefix
        if stripped == cur:
            break
        cur = stripped
    return name
