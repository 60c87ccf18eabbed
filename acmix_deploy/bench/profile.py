"""Where the time goes: per op type and per ACmix block (stage I / attention / conv path / rest).

ONNX Runtime: the session profiler's JSON trace (events with cat "Node", name
"<node>_kernel_time", args.op_name, dur in microseconds); runs before the first `warmup` are
dropped by matching node events to the "model_run" events that contain them. TensorRT: an
IProfiler on the engine's execution context, where the engine runner exposes one; otherwise the
result is an "unavailable" row. Node names go back to module paths through acmix_deploy.bench.naming.

JSON schema, version "1.0":

    {
      "schema_version": "1.0", "kind": "acmix-deploy/profile", "created": str,
      "config": {"model", "onnx", "engine": str | null, "batch", "warmup", "iterations", "threads": int,
                 "img_size": int | null, "input_size": [H, W], "backends": [str]},
      "machine": {...same as the bench schema...},
      "results": [{
        "backend": str, "status": "ok" | "unavailable" | "failed", "reason": str | null,
        "run_ms": float | null,             # median wall time of one profiled run
        "kernel_ms": float,                 # sum of node times per run
        "totals_ms": {"stage1", "attention", "conv", "rest": float},   # whole network
        "blocks": [{"block": str, "stage1", "attention", "conv", "rest", "total": float (ms)}],
        "outside_blocks_ms": float,         # nodes outside every ACmix block (counted in rest)
        "op_types": [{"op": str, "ms": float, "nodes": int}],          # descending
        "nodes": [{"name", "op", "path", "block": str | null, "category": str, "ms": float}]
      }],
      "notes": [str]
    }
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acmix_deploy.bench.machine import machine_info, usable_cpus
from acmix_deploy.bench.naming import CATEGORY_LABELS, REST, categories, classify, find_blocks
from acmix_deploy.bench.sources import DEFAULT_IMG_SIZE, ModelSource, Resolver, resolve_target
from acmix_deploy.bench.trace import GraphIndex, parse_ort_trace
from acmix_deploy.errors import AcmixError, first_line
from acmix_deploy.fileio import atomic_path
from acmix_deploy.onnx_names import engine_layer_node, module_path, op_of
from acmix_deploy.runners import BackendUnavailable, RunnerOptions, canonical_backend, make_images

if TYPE_CHECKING:
    from rich.console import Console

PROFILE_SCHEMA_VERSION = "1.0"
PROFILE_KIND = "acmix-deploy/profile"
PROFILE_BACKENDS = ("onnxruntime", "tensorrt")


@dataclass(frozen=True)
class NodeTime:
    name: str
    op: str
    path: str
    block: str | None
    category: str
    ms: float  # per run


@dataclass
class ProfileResult:
    backend: str
    status: str
    reason: str | None = None
    run_ms: float | None = None
    nodes: list[NodeTime] = field(default_factory=list)

    @property
    def kernel_ms(self) -> float:
        return sum(n.ms for n in self.nodes)

    def categories(self) -> tuple[str, ...]:
        """The core categories plus the family parts (SAN's weight net, ...) that occur."""
        return categories(n.category for n in self.nodes)

    def totals(self) -> dict[str, float]:
        out = dict.fromkeys(self.categories(), 0.0)
        for n in self.nodes:
            out[n.category] += n.ms
        return out

    def blocks(self) -> list[dict[str, Any]]:
        """Per ACmix block: ms per category and total, in network order."""
        rows: dict[str, dict[str, float]] = {}
        for n in self.nodes:
            if n.block is None:
                continue
            row = rows.setdefault(n.block, dict.fromkeys(self.categories(), 0.0))
            row[n.category] += n.ms
        return [{"block": b, **r, "total": sum(r.values())} for b, r in rows.items()]

    def outside_blocks_ms(self) -> float:
        return sum(n.ms for n in self.nodes if n.block is None)

    def op_types(self) -> list[dict[str, Any]]:
        ms: dict[str, float] = defaultdict(float)
        count: dict[str, int] = defaultdict(int)
        for n in self.nodes:
            ms[n.op] += n.ms
            count[n.op] += 1
        return [{"op": op, "ms": t, "nodes": count[op]} for op, t in sorted(ms.items(), key=lambda kv: -kv[1])]

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "status": self.status,
            "reason": self.reason,
            "run_ms": self.run_ms,
            "kernel_ms": self.kernel_ms,
            "totals_ms": self.totals(),
            "blocks": self.blocks(),
            "outside_blocks_ms": self.outside_blocks_ms(),
            "op_types": self.op_types(),
            "nodes": [asdict(n) for n in self.nodes],
        }


@dataclass
class ProfileReport:
    model: str
    config: dict[str, Any]
    results: list[ProfileResult]
    machine: dict[str, Any]
    created: str
    notes: list[str] = field(default_factory=list)

    def get(self, backend: str) -> ProfileResult | None:
        return next((r for r in self.results if r.backend == backend), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": PROFILE_SCHEMA_VERSION,
            "kind": PROFILE_KIND,
            "created": self.created,
            "model": self.model,
            "config": self.config,
            "machine": self.machine,
            "results": [r.to_dict() for r in self.results],
            "notes": list(self.notes),
        }


def attribute(times_ms: dict[str, float], ops: dict[str, str], graph: GraphIndex | None = None) -> list[NodeTime]:
    """Runtime node times -> NodeTimes with module path, ACmix block and category."""
    graph = graph or GraphIndex()
    known = graph.names
    paths: dict[str, str] = {}
    previous = ""
    for name in times_ms:  # execution order
        origin = graph.origin(name, ops.get(name))
        path = module_path(origin)
        if not path and origin not in known and previous:
            path = previous  # a generated node (layout reorder, copy) serves the node that ran before it
        paths[name] = previous = path
    blocks = find_blocks(list(paths.values()) + [module_path(n) for n in graph.names])
    out = []
    for name, ms in times_ms.items():
        block, category = classify(paths[name], blocks)
        out.append(NodeTime(name=name, op=ops.get(name, "?"), path=paths[name], block=block, category=category, ms=ms))
    return out


def profile_onnxruntime(
    onnx_path: Path, batch: int, input_size: tuple[int, int], warmup: int, iterations: int, threads: int
) -> ProfileResult:
    from acmix_deploy.runners import OnnxRuntimeRunner

    with tempfile.TemporaryDirectory(prefix="acmix-profile-") as tmp:
        # spinning on: nothing else runs beside it. The session saves the graph it runs: generated node
        # names ("ReorderOutput_token_57") differ between two sessions, so only its own copy traces them.
        optimized = Path(tmp) / "optimized.onnx"
        runner = OnnxRuntimeRunner(onnx_path, options=RunnerOptions(threads=threads),
                                   profile_prefix=str(Path(tmp) / "ort"), save_optimized=optimized).activate()
        x = make_images(batch, input_size)
        for _ in range(warmup + iterations):
            runner.infer(x)
        trace = runner.session.end_profiling()
        runner.deactivate()
        events = json.loads(Path(trace).read_text())
        graph = GraphIndex.from_onnx(onnx_path, optimized if optimized.exists() else None)
    times, ops, run_ms = parse_ort_trace(events, skip_runs=warmup)
    return ProfileResult("onnxruntime", "ok", run_ms=run_ms, nodes=attribute(times, ops, graph))


def layer_times_to_nodes(layer_ms: dict[str, float], runs: int) -> tuple[dict[str, float], dict[str, str]]:
    """TensorRT layer times (summed over `runs`) -> per-run times and op types keyed by the first
    ONNX node of each layer; layers that start at the same node add up."""
    times: dict[str, float] = defaultdict(float)
    ops: dict[str, str] = {}
    for layer, ms in layer_ms.items():
        node = engine_layer_node(layer)
        times[node] += ms / runs
        ops[node] = op_of(node)
    return dict(times), ops


def profile_tensorrt(
    source: ModelSource, batch: int, input_size: tuple[int, int], warmup: int, iterations: int
) -> ProfileResult:
    """Per-layer times from TensorRT's IProfiler; BackendUnavailable where it cannot be attached."""
    from acmix_deploy.runners import create_runner

    runner = create_runner("tensorrt", source, RunnerOptions(input_size=input_size))
    try:
        ctx, trt = runner.context, runner.trt

        class _LayerTimes(trt.IProfiler):  # type: ignore[misc,name-defined]
            def __init__(self) -> None:
                trt.IProfiler.__init__(self)
                self.ms: dict[str, float] = defaultdict(float)

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                self.ms[layer_name] += ms

        x = runner.prepare(batch)
        for _ in range(warmup):
            runner(x)
        runner.synchronize()
        prof = _LayerTimes()
        ctx.profiler = prof
        walls = []
        for _ in range(iterations):
            t0 = time.perf_counter()
            runner(x)
            runner.synchronize()
            walls.append((time.perf_counter() - t0) * 1000)
        nodes = attribute(*layer_times_to_nodes(prof.ms, iterations))
        return ProfileResult("tensorrt", "ok", run_ms=statistics.median(walls), nodes=nodes)
    finally:
        runner.close()


def profile(
    model: str | None = None,
    onnx: str | Path | None = None,
    engine: str | Path | None = None,
    img_size: int | None = None,
    batch: int = 1,
    warmup: int = 5,
    iterations: int = 20,
    threads: int | None = None,
    backends: Sequence[str] | None = None,
    shift: str | None = None,
    workspace: str | Path | None = None,
    resolver: Resolver | None = None,
) -> ProfileReport:
    """Profile one model per backend; a backend that cannot run here is an "unavailable" result."""
    if batch < 1 or iterations < 1 or warmup < 0:
        raise AcmixError("--batch and --iterations must be >= 1 and --warmup >= 0")
    if threads is not None and threads < 1:
        raise AcmixError("--threads must be >= 1")
    source, found = resolve_target(model, onnx, engine, img_size, shift, resolver, workspace)
    notes = found.splitlines() if found else []
    if backends:
        try:
            wanted = list(dict.fromkeys(canonical_backend(b) for b in backends))
        except ValueError as exc:
            raise AcmixError(str(exc)) from None
        bad = [b for b in wanted if b not in PROFILE_BACKENDS]
        if bad:
            raise AcmixError(f"profile supports {', '.join(PROFILE_BACKENDS)}, not {', '.join(bad)}")
    else:
        only_engine = source.engine_path is not None and source.onnx_path is None and source.onnx_factory is None
        wanted = ["tensorrt"] if only_engine else list(PROFILE_BACKENDS)
    n_threads = threads or usable_cpus()
    size = source.input_size or (DEFAULT_IMG_SIZE,) * 2
    results: list[ProfileResult] = []
    with tempfile.TemporaryDirectory(prefix="acmix-profile-") as tmp:
        for backend in wanted:
            try:
                if backend == "onnxruntime":
                    if source.onnx_path is None and source.onnx_factory is None:
                        raise BackendUnavailable("onnxruntime needs an ONNX model (--model or --onnx)")
                    from acmix_deploy.runners.ort import import_onnxruntime

                    try:
                        import_onnxruntime()
                    except AcmixError as exc:
                        raise BackendUnavailable(str(exc)) from None
                    path = source.require_onnx(Path(tmp))
                    results.append(profile_onnxruntime(path, batch, size, warmup, iterations, n_threads))
                else:
                    results.append(profile_tensorrt(source, batch, size, warmup, iterations))
            except BackendUnavailable as exc:
                results.append(ProfileResult(backend, "unavailable", str(exc)))
            except Exception as exc:  # one broken backend is a row, not a crash
                results.append(ProfileResult(backend, "failed", first_line(exc)))
    for r in results:
        if r.status == "ok" and not any(n.block for n in r.nodes):
            notes.append(f"{r.backend}: no ACmix block found in the node names (all time counts as rest)")
    config = {
        "model": model,
        "onnx": str(source.onnx_path) if source.onnx_path else None,
        "engine": str(source.engine_path) if source.engine_path else None,
        "batch": batch,
        "warmup": warmup,
        "iterations": iterations,
        "threads": n_threads,
        "img_size": img_size,
        "input_size": list(size),
        "backends": wanted,
    }
    return ProfileReport(
        model=source.label,
        config=config,
        results=results,
        machine=machine_info(),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        notes=notes,
    )


# ------------------------------------------------------------------------------------ reports

def _cell(ms: float, whole: float) -> str:
    return f"{ms:.2f} ({ms / whole:.0%})" if whole > 0 else f"{ms:.2f}"


def render_profile(report: ProfileReport, console: Console, top_ops: int = 12) -> None:
    """Per-block table (ms and share within the block), totals, and the top op types."""
    from rich.table import Table

    for r in report.results:
        if r.status != "ok":
            console.print(f"[dim]{r.backend}: {r.status}: {r.reason}[/dim]")
            continue
        kernel = r.kernel_ms
        table = Table(
            title=f"{report.model} on {r.backend}, batch {report.config['batch']}: ms per run (share)",
            title_justify="left",
        )
        table.add_column("ACmix block")
        cats = r.categories()
        for cat in cats:
            table.add_column(CATEGORY_LABELS[cat], justify="right")
        table.add_column("block total", justify="right")
        table.add_column("of network", justify="right")
        for b in r.blocks():
            table.add_row(b["block"], *[_cell(b[c], b["total"]) for c in cats], f"{b['total']:.2f}",
                          f"{b['total'] / kernel:.0%}" if kernel else "-")  # fmt: skip
        outside = r.outside_blocks_ms()
        table.add_section()
        table.add_row("outside ACmix blocks", *[_cell(outside, outside) if c == REST else "" for c in cats],
                      f"{outside:.2f}",
                      f"{outside / kernel:.0%}" if kernel else "-")  # fmt: skip
        totals = r.totals()
        table.add_row("[bold]total[/bold]", *[_cell(totals[c], kernel) for c in cats], f"{kernel:.2f}", "100%",
                      style="bold")  # fmt: skip
        console.print(table)
        ops = Table(title=f"top op types on {r.backend}", title_justify="left")
        for col, just in (("op", "left"), ("ms", "right"), ("share", "right"), ("nodes", "right")):
            ops.add_column(col, justify=just)
        for o in r.op_types()[:top_ops]:
            ops.add_row(o["op"], f"{o['ms']:.3f}", f"{o['ms'] / kernel:.1%}" if kernel else "-", str(o["nodes"]))
        console.print(ops)
        if r.run_ms is not None:
            console.print(f"{r.backend}: {r.run_ms:.2f} ms per run (median), {kernel:.2f} ms in nodes")
    for note in report.notes:
        console.print(f"note: {note}")


def write_profile_json(report: ProfileReport, path: str | os.PathLike[str]) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
    return Path(path)


def write_profile_plot(report: ProfileReport, path: str | os.PathLike[str], top_ops: int = 12) -> Path:
    """PNG: stacked bars per ACmix block (stage I / attention / conv / rest) and the top op types."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in report.results if r.status == "ok"]
    if not ok:
        raise AcmixError("nothing to plot: no backend produced a profile")
    fig, axes = plt.subplots(len(ok), 2, figsize=(12, 1.5 + 0.32 * max(len(r.blocks()) for r in ok) + 2.5 * len(ok)),
                             squeeze=False)  # fmt: skip
    colours = {"stage1": "#4c72b0", "attention": "#dd8452", "conv": "#55a868", REST: "#8c8c8c",
               "weight_net": "#8172b3", "aggregation": "#c44e52"}
    for (ax_b, ax_o), r in zip(axes, ok):
        cats = r.categories()
        rows = r.blocks() + [{"block": "outside ACmix blocks", **dict.fromkeys(cats, 0.0),
                              REST: r.outside_blocks_ms()}]  # fmt: skip
        labels = [b["block"] for b in rows][::-1]
        left = [0.0] * len(rows)
        for cat in cats:
            vals = [b[cat] for b in rows][::-1]
            ax_b.barh(labels, vals, left=left, color=colours.get(cat, "#c44e52"), label=CATEGORY_LABELS[cat])
            left = [a + v for a, v in zip(left, vals)]
        totals = r.totals()
        kernel = r.kernel_ms or 1.0
        share = ", ".join(f"{CATEGORY_LABELS[c]} {totals[c] / kernel:.0%}" for c in cats)
        ax_b.set_title(f"{r.backend}: ms per run by ACmix block\ntotal: {share}", fontsize=9)
        ax_b.set_xlabel("ms")
        ax_b.tick_params(axis="y", labelsize=7)
        # room on the right for the legend: no bar reaches past 1/1.45 of the axis, the legend box
        # (four short entries in the lower right corner) starts further right
        ax_b.set_xlim(0, max(max(left), 1e-9) * 1.45)
        ax_b.legend(fontsize=7, loc="lower right")
        top = r.op_types()[:top_ops][::-1]
        ax_o.barh([o["op"] for o in top], [o["ms"] for o in top], color="#4c72b0")
        ax_o.set_title(f"{r.backend}: top op types (ms per run)", fontsize=9)
        ax_o.set_xlabel("ms")
        ax_o.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"{report.model}, batch {report.config['batch']}", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
