"""ONNX Runtime profiler traces -> per-node times, and runtime node names -> original ONNX nodes.

ONNX Runtime rewrites the graph before running it: NCHWc convolutions are named after their output
tensor ("<tensor>_nchwc"), layout nodes get generated names ("ReorderOutput_token_61"), fusions
append "/<Fusion>/". GraphIndex traces such a node back to a node of the original graph by name
rules first and, failing that, through the optimized graph's tensors (ONNX Runtime keeps the
original tensor names at the boundaries of what it rewrote).
"""

from __future__ import annotations

import functools
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acmix_deploy.onnx_names import resolve_node


@dataclass
class _Topology:
    inputs: dict[str, list[str]] = field(default_factory=dict)  # node -> input tensors
    outputs: dict[str, list[str]] = field(default_factory=dict)  # node -> output tensors
    producers: dict[str, str] = field(default_factory=dict)  # tensor -> node
    op_types: dict[str, str] = field(default_factory=dict)  # node -> op type

    @classmethod
    def load(cls, path: Path) -> _Topology:
        from acmix_deploy.onnxio import load_model

        graph = load_model(path, load_external_data=False).graph
        topo = cls()
        for n in graph.node:
            if not n.name:
                continue
            topo.inputs[n.name] = [i for i in n.input if i]
            topo.outputs[n.name] = [o for o in n.output if o]
            topo.op_types[n.name] = n.op_type
            for o in n.output:
                topo.producers[o] = n.name
        return topo


@dataclass
class GraphIndex:
    """The original graph (and optionally ONNX Runtime's optimized one) to trace node names back."""

    original: _Topology = field(default_factory=_Topology)
    optimized: _Topology | None = None

    @classmethod
    def from_onnx(cls, path: Path, optimized: Path | None = None) -> GraphIndex:
        return cls(_Topology.load(path), _Topology.load(optimized) if optimized else None)

    @functools.cached_property
    def names(self) -> set[str]:
        return set(self.original.op_types)

    def _by_tensors(self, node: str, depth: int = 6) -> str | None:
        """Follow the optimized graph's tensors until one of them exists in the original graph."""
        opt = self.optimized
        if opt is None or node not in opt.op_types:
            return None
        seen = set()
        frontier = [node]
        for _ in range(depth):
            nxt = []
            for cur in frontier:
                if cur in seen:
                    continue
                seen.add(cur)
                if cur != node:
                    by_name = resolve_node(cur, self.names, self.original.producers)
                    if by_name in self.original.op_types:
                        return by_name
                for t in opt.outputs.get(cur, []) + opt.inputs.get(cur, []):
                    if t in self.original.producers:
                        return self.original.producers[t]
                nxt += [opt.producers[t] for t in opt.inputs.get(cur, []) if t in opt.producers]
            frontier = nxt
        return None

    def origin(self, name: str, op: str | None = None) -> str:
        """The original node behind a runtime node name (the name itself when nothing matches).

        A fusion named after its last node (a Conv+Relu named after the Relu's output) is walked
        back to the node of the executed op type.
        """
        orig = self.original
        node = resolve_node(name, self.names, orig.producers)
        if node not in orig.op_types:
            node = self._by_tensors(name) or node
        if op and node in orig.op_types and orig.op_types[node] != op:
            cur: str | None = node
            for _ in range(3):
                ins = orig.inputs.get(cur) or []
                cur = orig.producers.get(ins[0]) if ins else None
                if cur is None:
                    break
                if orig.op_types.get(cur) == op:
                    return cur
        return node


def parse_ort_trace(
    events: list[dict[str, Any]], skip_runs: int = 0
) -> tuple[dict[str, float], dict[str, str], float | None]:
    """Node times (ms, median over the kept runs) and op types from an ONNX Runtime trace.

    Node events are assigned to the "model_run" event that contains them; the first `skip_runs`
    runs (warm-up) are dropped. The median per node keeps a preempted run from skewing one node.
    Returns (node -> ms per run, node -> op type, median wall time of a run).
    """
    runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"), key=lambda e: e["ts"]
    )
    kept = runs[skip_runs:] if len(runs) > skip_runs else runs
    windows = [(float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in kept]
    per_run: dict[str, list[float]] = defaultdict(lambda: [0.0] * max(len(windows), 1))
    ops: dict[str, str] = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        ts = float(e.get("ts", 0))
        idx = next((i for i, (lo, hi) in enumerate(windows) if lo <= ts <= hi), None)
        if windows and idx is None:
            continue  # a warm-up run
        node = e["name"][: -len("_kernel_time")]
        per_run[node][idx or 0] += float(e.get("dur", 0)) / 1000.0
        ops[node] = str(e.get("args", {}).get("op_name", "?"))
    times = {node: statistics.median(vals) for node, vals in per_run.items()}
    run_ms = statistics.median(float(e["dur"]) / 1000.0 for e in kept) if kept else None
    return times, ops, run_ms
