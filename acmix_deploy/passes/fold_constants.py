"""fold_constants: evaluate constant subgraphs once, without inflating the file.

Exporters emit arithmetic on constants (shape computations, Pow(8, -0.5), positional maps computed
from a constant grid, weight transposes, Identity copies of shared parameters); evaluating it at
every inference is wasted work and hides constants from the other passes (a Conv's weight must be
a constant to be fused or folded into). onnx-graphsurgeon's Graph.fold_constants does the
evaluation with ONNX Runtime; this pass decides what it may fold.

Size rule: folding never makes the model's constant data grow by more than
    budget = SLACK_BYTES (64 KiB) + GROWTH_FRACTION (5 %) x the model's constant bytes.
A node computed only from constants is folded when its result is no larger than the stored
constants it replaces (those of its sources that nothing else reads: a weight transpose, a cast,
shape arithmetic), or, in topological order, while the growth it adds (result minus replaced
sources) fits in what is left of the budget (a positional map computed from a small grid). So an
Expand / Tile / unfold that turns kilobytes into megabytes stays in the graph and runs at run
time. Shapes are re-inferred between rounds (folded shape arithmetic makes more sizes known);
results whose size stays unknown are folded last, each only up to SLACK_BYTES (gs's
size_threshold). The total is measured after folding; if it exceeds the budget (a source that
stays alive, results of unknown size), the pass retries without the unknown-size round, then
with only non-growing folds, and failing that returns the graph unfolded. Random* nodes are
never folded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import onnx_graphsurgeon as gs

from acmix_deploy.passes._graph import constant_value, nbytes, with_inferred_shapes

SLACK_BYTES = 64 << 10
GROWTH_FRACTION = 0.05
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


def constant_bytes(graph: gs.Graph) -> int:
    """Bytes of constant data the graph stores (initializers and Constant nodes)."""
    total = 0
    for t in graph.tensors().values():
        if isinstance(t, gs.Constant):
            total += int(t.values.nbytes)
        elif t.inputs and t.inputs[0].op == "Constant":
            val = constant_value(t)
            total += int(val.nbytes) if val is not None else 0
    return total


def _is_source(node: gs.Node) -> bool:
    # gs folds Constant nodes and (static parts of) shapes; both are stored or tiny
    return node.op in ("Constant", "Shape")


def excluded_outputs(graph: gs.Graph, budget: float, allow_unknown: bool) -> tuple[set[str], bool]:
    """Names of outputs of constant-only nodes the size rule forbids folding, and whether any was
    forbidden only because its size is unknown. `graph` must be topologically sorted."""
    tensors = graph.tensors()
    sources: dict[str, frozenset[str]] = {}
    size: dict[str, int] = {}
    for name, t in tensors.items():
        if isinstance(t, gs.Constant):
            sources[name], size[name] = frozenset([name]), int(t.values.nbytes)
    const_only: list[gs.Node] = []
    for node in graph.nodes:
        outs = [o for o in node.outputs if not o.is_empty()]
        if _is_source(node):
            for o in outs:
                val = constant_value(o) if node.op == "Constant" else None
                sources[o.name] = frozenset([o.name])
                size[o.name] = int(val.nbytes) if val is not None else (nbytes(o) or 64)
            continue
        ins = [t for t in node.inputs if not t.is_empty()]
        if node.op in NONDETERMINISTIC or (ins and all(t.name in sources for t in ins) and not list(node.subgraphs())):
            const_only.append(node)
            for o in outs:
                sources[o.name] = frozenset().union(*(sources[t.name] for t in ins)) if ins else frozenset()
    folded_ids = {id(n) for n in const_only}
    outputs = {t.name for t in graph.outputs}
    # a source is replaced by folding if every reader of it is part of the constant subgraph
    freed = {
        name
        for name in size
        if name not in outputs and all(id(c) in folded_ids for c in tensors[name].outputs)
    }

    excluded: set[str] = set()
    unknown = False
    remaining = budget
    for node in const_only:
        outs = [o for o in node.outputs if not o.is_empty()]
        if node.op in NONDETERMINISTIC or any(t.name in excluded for t in node.inputs):
            excluded.update(o.name for o in outs)
            continue
        out_sizes = [nbytes(o) for o in outs]
        if any(s is None for s in out_sizes):
            if not allow_unknown:
                excluded.update(o.name for o in outs)
                unknown = True
            continue
        src = frozenset().union(*(sources[o.name] for o in outs))
        growth = sum(out_sizes) - sum(size[s] for s in src if s in freed)
        if growth <= 0:
            continue
        if growth <= remaining:
            remaining -= growth
            continue
        excluded.update(o.name for o in outs)
    return excluded, unknown


def _fold(graph: gs.Graph, excluded: set[str], size_threshold: int | None) -> None:
    def should_exclude(node: gs.Node) -> bool:
        return any(o.name in excluded for o in node.outputs)

    kwargs = dict(fold_shapes=True, size_threshold=size_threshold, should_exclude_node=should_exclude)
    try:
        graph.fold_constants(partitioning=None, error_ok=False, **kwargs)
    except Exception:  # noqa: BLE001 - one subgraph ORT cannot evaluate must not stop the rest
        graph.fold_constants(partitioning="recursive", error_ok=True, **kwargs)


def _fold_rounds(graph: gs.Graph, budget: float, slack_bytes: int, before: int, unknown_round: bool) -> gs.Graph:
    """Fold, re-infer shapes (folded shape arithmetic makes more sizes known), repeat; then, if
    asked, fold what still has an unknown size with each result capped at the slack."""
    for _ in range(4):
        left = max(0.0, budget - (constant_bytes(graph) - before))
        excluded, unknown = excluded_outputs(graph, left, allow_unknown=False)
        n_nodes = len(graph.nodes)
        _fold(graph, excluded, size_threshold=None)
        graph.cleanup().toposort()
        if len(graph.nodes) == n_nodes or not unknown:
            break
        graph = with_inferred_shapes(graph).toposort()
    if unknown_round and unknown:
        left = max(0.0, budget - (constant_bytes(graph) - before))
        excluded, _ = excluded_outputs(graph, left, allow_unknown=True)
        _fold(graph, excluded, size_threshold=slack_bytes)
        graph.cleanup().toposort()
    return graph


def fold_constants(
    graph: gs.Graph, slack_bytes: int = SLACK_BYTES, growth_fraction: float = GROWTH_FRACTION
) -> gs.Graph:
    """Fold constant subgraphs within the size rule (see module doc)."""
    base = with_inferred_shapes(graph).toposort()
    before = constant_bytes(base)
    budget = slack_bytes + growth_fraction * before
    with _quiet_gs():
        # from the full rule down to folding only what grows nothing; keep the first within budget
        for round_budget, unknown_round in ((budget, True), (budget, False), (0.0, False)):
            folded = _fold_rounds(base.copy(), round_budget, slack_bytes, before, unknown_round)
            if constant_bytes(folded) - before <= budget:
                return folded
    return base
