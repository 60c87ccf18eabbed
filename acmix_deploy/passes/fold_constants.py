"""fold_constants: evaluate constant subgraphs once, without inflating the file.

Exporters emit arithmetic on constants (shape computations, Pow(8, -0.5), positional maps computed
from a constant grid, weight transposes, Identity copies of shared parameters); evaluating it at
every inference is wasted work and hides constants from the other passes (a Conv's weight must be
a constant to be fused or folded into). onnx-graphsurgeon's Graph.fold_constants does the
evaluation with ONNX Runtime; this pass decides what it may fold.

Size rule (a constant-only node is folded unless it would grow the file):
    fold a node iff  bytes(outputs) <= max(SLACK_BYTES, GROWTH_FACTOR * bytes(sources))
where sources are the stored constants (initializers, Constant nodes, Shape results gs can fold) the
node's outputs are computed from, through any chain of folded nodes. With the defaults
(SLACK_BYTES = 1 MiB, GROWTH_FACTOR = 2) a weight transpose, a cast or shape arithmetic always
folds, a positional map up to 1 MiB folds, and an Expand / Tile / ConstantOfShape that turns a
few bytes into megabytes stays in the graph, computed at run time. A node whose output size ONNX
shape inference cannot tell is folded only if its result is at most SLACK_BYTES (gs's
size_threshold). Random* nodes are never folded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import onnx_graphsurgeon as gs

from acmix_deploy.passes._graph import constant_value, nbytes, with_inferred_shapes

SLACK_BYTES = 1 << 20
GROWTH_FACTOR = 2.0
NONDETERMINISTIC = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
)


@contextlib.contextmanager
def _quiet_gs() -> Iterator[None]:
    """gs logs every skipped fold as a warning; the pass reports what it changed instead."""
    from onnx_graphsurgeon.logger import G_LOGGER as logger

    old = logger.severity
    logger.severity = logger.ERROR
    try:
        yield
    finally:
        logger.severity = old


def excluded_outputs(
    graph: gs.Graph, growth_factor: float, slack_bytes: int, allow_unknown: bool
) -> tuple[set[str], bool]:
    """Names of outputs of constant-only nodes the size rule forbids folding, and whether any was
    forbidden only because its size is unknown. `graph` must be topologically sorted."""
    sources: dict[str, frozenset[str]] = {}
    size: dict[str, int] = {}
    for name, t in graph.tensors().items():
        if isinstance(t, gs.Constant):
            sources[name] = frozenset([name])
            size[name] = int(t.values.nbytes)
    excluded: set[str] = set()
    unknown = False
    for node in graph.nodes:
        outs = [o for o in node.outputs if not o.is_empty()]
        if node.op == "Constant":
            for o in outs:
                val = constant_value(o)
                sources[o.name] = frozenset([o.name])
                size[o.name] = int(val.nbytes) if val is not None else 0
            continue
        if node.op == "Shape":  # gs folds static (parts of) shapes; count them as tiny sources
            for o in outs:
                sources[o.name] = frozenset([o.name])
                size[o.name] = nbytes(o) or 64
            continue
        ins = [t for t in node.inputs if not t.is_empty()]
        if node.op in NONDETERMINISTIC:
            excluded.update(o.name for o in outs)
            continue
        if not ins or any(t.name not in sources for t in ins) or list(node.subgraphs()):
            continue
        src = frozenset().union(*(sources[t.name] for t in ins))
        out_sizes = [nbytes(o) for o in outs]
        if any(s is None for s in out_sizes):
            if not allow_unknown:
                excluded.update(o.name for o in outs)
                unknown = True
                continue
        elif sum(out_sizes) > max(slack_bytes, growth_factor * sum(size[s] for s in src)):
            excluded.update(o.name for o in outs)
            continue
        for o in outs:
            sources[o.name] = src
    return excluded, unknown


def _fold(graph: gs.Graph, excluded: set[str], size_threshold: int | None) -> None:
    def should_exclude(node: gs.Node) -> bool:
        return any(o.name in excluded for o in node.outputs)

    kwargs = dict(fold_shapes=True, size_threshold=size_threshold, should_exclude_node=should_exclude)
    try:
        graph.fold_constants(partitioning=None, error_ok=False, **kwargs)
    except Exception:  # noqa: BLE001 - one subgraph ORT cannot evaluate must not stop the rest
        graph.fold_constants(partitioning="recursive", error_ok=True, **kwargs)


def fold_constants(
    graph: gs.Graph, growth_factor: float = GROWTH_FACTOR, slack_bytes: int = SLACK_BYTES
) -> gs.Graph:
    """Fold constant subgraphs that obey the size rule (see module doc)."""
    graph = with_inferred_shapes(graph).toposort()
    with _quiet_gs():
        excluded, unknown = excluded_outputs(graph, growth_factor, slack_bytes, allow_unknown=False)
        _fold(graph, excluded, size_threshold=None)
        graph.cleanup().toposort()
        if unknown:  # second round: sizes unknown to shape inference, capped at the slack
            graph = with_inferred_shapes(graph).toposort()
            excluded, _ = excluded_outputs(graph, growth_factor, slack_bytes, allow_unknown=True)
            _fold(graph, excluded, size_threshold=slack_bytes)
            graph.cleanup().toposort()
    return graph
