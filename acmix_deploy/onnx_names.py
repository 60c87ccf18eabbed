"""Readable, deterministic ONNX node names from PyTorch module paths.

The torch.export-based exporter records each node's module scope in the node metadata
(``pkg.torch.onnx.name_scopes``: ['', 'layer1', 'layer1.0', ..., '<fx node>']). Nodes are renamed
"<module.path>/<Op>_<n>" (n counts per module path and op type in graph order; the root module's
path is empty, giving "/<Op>_<n>"), so profiles, graph passes and precision rules can tell the
attention path (P.attention), the conv path (P.conv_path) and stage I (P.conv1..3, Swin P.qkv) apart.
Afterwards every exporter metadata entry (stack traces with local file paths, FX node text) is
dropped: the file stays small and byte-identical across runs and machines.
"""

from __future__ import annotations

import ast
from collections import Counter

import onnx

SCOPE_KEY = "pkg.torch.onnx.name_scopes"


def module_path(node: onnx.NodeProto) -> str | None:
    """The module path recorded for a node by the exporter, or None when it recorded none."""
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
    paths = [module_path(n) for n in graph.node]
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
