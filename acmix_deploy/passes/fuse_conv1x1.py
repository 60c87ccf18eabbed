"""fuse_parallel_conv1x1: 1x1 convolutions that read the same tensor become one Conv + Split.

ACmix stage I computes q, k and v with three 1x1 convs over the same input; a ResNet block's first
conv and its stride-1 downsample conv also share their input. One Conv with the weights stacked
along the output channels computes all of them in one GEMM (better use of the matrix kernels and
one pass over the input) and a Split hands each original consumer its channels.

Convs are fused when all of these hold, so the rewrite is exact:
- they read the same tensor as their data input;
- their kernels are 1x1 (any number of spatial dims) and their weights are constants
  (initializers or Constant nodes), as are their biases if they have any;
- they agree on strides, dilations, pads / auto_pad, input channels and weight dtype;
- group == 1. Grouped convs are left alone: stacking grouped weights would reassign output
  channels to other groups.
A missing bias becomes zeros when it is stacked with convs that have one.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx_graphsurgeon as gs

from acmix_deploy.onnx_names import fused_name, module_path
from acmix_deploy.passes._graph import (
    Namer,
    constant_value,
    int_list,
    is_onnx_op,
    node_module_path,
)


def _conv_key(conv: gs.Node) -> tuple | None:
    """What fused convs must agree on, or None if this conv cannot take part."""
    if not is_onnx_op(conv) or len(conv.outputs) != 1 or len(conv.inputs) not in (2, 3):
        return None
    w = constant_value(conv.inputs[1])
    if w is None or w.ndim < 3 or any(int(k) != 1 for k in w.shape[2:]):
        return None
    if len(conv.inputs) == 3 and not conv.inputs[2].is_empty() and constant_value(conv.inputs[2]) is None:
        return None
    attrs = conv.attrs
    if int(attrs.get("group", 1)) != 1:
        return None
    nsp = w.ndim - 2
    if "kernel_shape" in attrs and any(int(k) != 1 for k in attrs["kernel_shape"]):
        return None
    auto_pad = attrs.get("auto_pad", "NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    pads = int_list(attrs.get("pads"), [0] * (2 * nsp)) if auto_pad == "NOTSET" else ()
    return (
        nsp,
        int(w.shape[1]),
        str(w.dtype),
        int_list(attrs.get("strides"), [1] * nsp),
        int_list(attrs.get("dilations"), [1] * nsp),
        auto_pad,
        pads,
    )


def _bias(conv: gs.Node, cout: int, dtype: np.dtype) -> np.ndarray | None:
    if len(conv.inputs) < 3 or conv.inputs[2].is_empty():
        return None
    return np.asarray(constant_value(conv.inputs[2]), dtype=dtype).reshape(cout)


def _fuse_group(graph: gs.Graph, x: gs.Tensor, convs: list[gs.Node], namer: Namer) -> None:
    weights = [constant_value(c.inputs[1]) for c in convs]
    dtype = weights[0].dtype
    couts = [int(w.shape[0]) for w in weights]
    biases = [_bias(c, n, dtype) for c, n in zip(convs, couts)]
    names = [c.name or c.outputs[0].name for c in convs]
    paths = [node_module_path(c) for c in convs]
    conv_name = namer.name(fused_name(names, "Conv", paths))
    split_name = namer.name(fused_name(names, "Split", paths))
    # "<block>.qkv.weight" for ACmix stage I; the full node name for other groups
    base = module_path(conv_name) if "[" not in conv_name and module_path(conv_name) else conv_name
    w = namer.constant(f"{base}.weight", np.concatenate(weights, 0))
    inputs: list[gs.Tensor] = [x, w]
    if any(b is not None for b in biases):
        stacked = [b if b is not None else np.zeros(n, dtype) for b, n in zip(biases, couts)]
        inputs.append(namer.constant(f"{base}.bias", np.concatenate(stacked)))

    outs = [c.outputs[0] for c in convs]
    shape = None
    if all(o.shape is not None and len(o.shape) >= 2 for o in outs) and all(isinstance(o.shape[1], int) for o in outs):
        shape = list(outs[0].shape)
        shape[1] = sum(couts)
    fused_out = gs.Variable(namer.name(f"{conv_name}_output_0"), dtype=outs[0].dtype or dtype, shape=shape)
    attrs = {k: v for k, v in convs[0].attrs.items()}
    fused = gs.Node("Conv", conv_name, attrs=attrs, inputs=inputs, outputs=[fused_out])

    for c in convs:
        c.inputs.clear()
        c.outputs.clear()
        graph.nodes.remove(c)
    if graph.opset >= 13:
        sizes = namer.constant(f"{base}.split_sizes", np.asarray(couts, dtype=np.int64))
        split = gs.Node("Split", split_name, attrs={"axis": 1}, inputs=[fused_out, sizes], outputs=outs)
    else:
        split = gs.Node("Split", split_name, attrs={"axis": 1, "split": couts}, inputs=[fused_out], outputs=outs)
    graph.nodes.extend([fused, split])


def fuse_parallel_conv1x1(graph: gs.Graph) -> gs.Graph:
    """Fuse every group of >= 2 compatible 1x1 Convs that read the same tensor into Conv + Split."""
    graph = graph.copy()
    order = {id(n): i for i, n in enumerate(graph.nodes)}
    namer = Namer(graph)
    for x in list(graph.tensors().values()):
        readers = [n for n in x.outputs if n.op == "Conv" and n.inputs and n.inputs[0] is x]
        if len(readers) < 2:
            continue
        groups: dict[tuple, list[gs.Node]] = defaultdict(list)
        for conv in sorted(readers, key=lambda n: order[id(n)]):
            key = _conv_key(conv)
            if key is not None:
                groups[key].append(conv)
        for convs in groups.values():
            if len(convs) >= 2:
                _fuse_group(graph, x, convs, namer)
    graph.cleanup()
    namer.settle(graph)
    return graph.toposort()
