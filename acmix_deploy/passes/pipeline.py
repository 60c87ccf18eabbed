"""Run graph passes over an ONNX model behind a parity gate, and report what changed.

The gate: the optimized model must pass the ONNX checker and compute the input model's function in
ONNX Runtime on the same seeded random inputs (static input shapes as declared, batch 2 for a
dynamic batch dimension) within acmix_deploy.parity's rule (fp32 tol 1e-4). When it fails, the
pass that broke it is named: checked after every pass with `debug`, otherwise found by re-running
the passes one at a time. Nothing is written then: `optimize_file` writes only a model that
passed, through an atomic rename.
"""

from __future__ import annotations

import functools
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from acmix_deploy import parity
from acmix_deploy import workspace as ws
from acmix_deploy.runners.timing import Budget, Timed, time_interleaved
from acmix_deploy.errors import AcmixError, ParityError, first_line
from acmix_deploy.fileio import write_bytes_atomic
from acmix_deploy.runners import OnnxRuntimeRunner, RunnerOptions
from acmix_deploy.runners.ort import quiet_onnxruntime
from acmix_deploy.passes import PASSES, resolve_passes

TWO_GB = 2**31 - 1
PARITY_BATCH = 2
# Half-precision graphs: the passes round folded weights once to fp16, so allow fp16 rounding
# (acmix_deploy.parity defines only the fp32 tolerance).
FP16_TOL = parity.FP16_TOL
# Fewest timed rounds per model for a median worth reporting; measure_latency raises `runs` to it.
MIN_LATENCY_RUNS = 10


@dataclass
class PassRecord:
    name: str
    seconds: float
    nodes_before: int
    nodes_after: int
    parity: list[str] = field(default_factory=list)  # filled with `debug`


@dataclass
class LatencyResult:
    """ONNX Runtime CPU latency, both sessions alternated in one process, spinning off."""

    before_ms: float
    after_ms: float
    ratio: float  # median over alternated pairs of after / before
    runs: int
    warmup: int
    threads: int | None


@dataclass
class OptimizeReport:
    passes: list[PassRecord]
    ops_before: dict[str, int]
    ops_after: dict[str, int]
    bytes_before: int
    bytes_after: int
    parity: list[str]
    input_shapes: dict[str, list[int]]
    latency: LatencyResult | None = None
    input: str | None = None
    output: str | None = None
    model: str | None = None
    from_workspace: bool = False
    unchanged: bool = False  # the passes changed nothing: optimize_file then writes nothing

    @property
    def nodes_before(self) -> int:
        return sum(self.ops_before.values())

    @property
    def nodes_after(self) -> int:
        return sum(self.ops_after.values())

    @property
    def conv_before(self) -> int:
        return self.ops_before.get("Conv", 0)

    @property
    def conv_after(self) -> int:
        return self.ops_after.get("Conv", 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            nodes_before=self.nodes_before,
            nodes_after=self.nodes_after,
            conv_before=self.conv_before,
            conv_after=self.conv_after,
        )
        return d


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------


def load_model(path: str | os.PathLike[str]) -> tuple[onnx.ModelProto, int]:
    """The model (external data loaded) and its size on disk including external data files."""
    from acmix_deploy.onnxio import attach_external_data, check_finite, load_model as load_onnx, size_on_disk

    model = load_onnx(path, load_external_data=False)  # the one loader's messages (empty, not ONNX ...)
    size = size_on_disk(path, model)
    attach_external_data(model, path)
    check_finite(model, path)
    return model, size


def to_model(graph: gs.Graph, template: onnx.ModelProto) -> onnx.ModelProto:
    """Export a gs graph keeping the template model's metadata (gs drops it) and no stale value_info."""
    model = gs.export_onnx(graph, do_type_check=False)
    del model.graph.value_info[:]
    model.ir_version = template.ir_version
    model.producer_name = template.producer_name
    model.producer_version = template.producer_version
    model.domain = template.domain
    model.model_version = template.model_version
    model.doc_string = template.doc_string
    del model.metadata_props[:]
    model.metadata_props.extend(template.metadata_props)
    meta = {n.name: n.metadata_props for n in template.graph.node if n.name and len(n.metadata_props)}
    for node in model.graph.node:
        if node.name in meta:
            node.metadata_props.extend(meta[node.name])
    return model


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


# --------------------------------------------------------------------------------------------
# parity gate
# --------------------------------------------------------------------------------------------


def _check_given_shape(name: str, shape: tuple[int, ...], tt: Any) -> None:
    """--input-shape must have the input's rank and positive sizes."""
    declared = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
    if any(d < 1 for d in shape):
        raise AcmixError(f"--input-shape {name}: every dimension must be >= 1, got {'x'.join(map(str, shape))}")
    if tt.HasField("shape") and len(shape) != len(declared):
        raise AcmixError(f"--input-shape {name}: the input has rank {len(declared)}, got {len(shape)} dimensions")


def make_inputs(
    model: onnx.ModelProto, seed: int = 0, input_shapes: dict[str, tuple[int, ...]] | None = None
) -> dict[str, np.ndarray]:
    """Seeded random inputs: declared static shapes, batch 2 for a dynamic first dimension."""
    rng = np.random.default_rng(seed)
    input_shapes = dict(input_shapes or {})
    initializers = {t.name for t in model.graph.initializer}
    feeds: dict[str, np.ndarray] = {}
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        if not vi.type.HasField("tensor_type"):
            raise AcmixError(f"input '{vi.name}' is not a tensor; the parity gate supports tensor inputs only")
        tt = vi.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if vi.name in input_shapes:
            shape = tuple(int(d) for d in input_shapes.pop(vi.name))
            _check_given_shape(vi.name, shape, tt)
        else:
            shape = []
            for axis, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value") and d.dim_value > 0:
                    shape.append(int(d.dim_value))
                elif axis == 0:
                    shape.append(PARITY_BATCH)
                else:
                    raise AcmixError(
                        f"input '{vi.name}' has a dynamic dimension at axis {axis}; "
                        f"give its shape with --input-shape {vi.name}=2x3x224x224 (or input_shapes=...)"
                    )
            shape = tuple(shape)
        if np.issubdtype(dtype, np.floating):
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[vi.name] = rng.random(shape) < 0.5
        elif np.issubdtype(dtype, np.integer):
            feeds[vi.name] = rng.integers(0, 10, shape).astype(dtype)
        else:
            raise AcmixError(f"input '{vi.name}' has type {dtype}, which the parity gate cannot generate")
    if input_shapes:
        raise AcmixError(f"--input-shape names no model input: {', '.join(input_shapes)}")
    return feeds


def run_model(model_bytes: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs with ONNX Runtime's own graph rewrites off, so the gate checks our graph."""
    quiet_onnxruntime()
    with OnnxRuntimeRunner(model_bytes, optimization="disable") as runner:
        return runner.infer(feeds)


def _tol(ref: np.ndarray) -> float:
    if ref.dtype in (np.float32, np.float64):
        return parity.FP32_TOL
    if np.issubdtype(ref.dtype, np.floating) or ref.dtype.name == "bfloat16":
        return FP16_TOL
    return 0.0


def check_parity(
    model: onnx.ModelProto,
    feeds: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    checker: bool = True,
    model_bytes: bytes | None = None,
) -> list[parity.ParityResult]:
    """ONNX checker (if `checker`) + ORT comparison of `model` against reference outputs. A model
    that fails to check, load or run, or gives other output names or shapes, raises ParityError.
    `model_bytes`: the model already serialized, when the caller has it."""
    if checker:
        try:
            onnx.checker.check_model(model)
        except Exception as exc:  # noqa: BLE001 - the checker raises several types
            raise ParityError(f"the ONNX checker rejects the model: {first_line(exc)}") from None
    try:
        outputs = run_model(model.SerializeToString() if model_bytes is None else model_bytes, feeds)
    except AcmixError as exc:
        raise ParityError(str(exc)) from None
    results = []
    for name, ref in reference.items():
        if name not in outputs:
            raise ParityError(f"output '{name}' is missing")
        out = outputs[name]
        if out.shape != ref.shape:
            raise ParityError(f"output '{name}' has shape {out.shape}, expected {ref.shape}")
        floating = np.issubdtype(ref.dtype, np.floating)
        results.append(
            parity.compare(ref.astype(np.float64), out.astype(np.float64), _tol(ref), name=name,
                           classify=None if floating else False)
        )
    return results


# --------------------------------------------------------------------------------------------
# latency
# --------------------------------------------------------------------------------------------


def measure_latency(
    before: bytes,
    after: bytes,
    feeds: dict[str, np.ndarray],
    runs: int = 20,
    warmup: int = 3,
    threads: int | None = None,
) -> LatencyResult:
    """Median latencies of two models timed interleaved in one process (acmix_deploy.runners.timing:
    each round runs both sessions, the order rotated every round, the garbage collector off while
    timing), intra-op spinning off so the idle session does not steal the other's cores (DESIGN.md
    section 4). `runs` is raised to MIN_LATENCY_RUNS; `ratio` is the median over rounds of
    after / before."""
    runs = max(runs, MIN_LATENCY_RUNS)
    quiet_onnxruntime()
    options = RunnerOptions(threads=threads, spinning=False)
    runners = [OnnxRuntimeRunner(m, options=options).activate() for m in (before, after)]
    items = [Timed(functools.partial(r.session.run, r.output_names, feeds)) for r in runners]
    tb, ta = time_interleaved(items, warmup=Budget(iterations=warmup), measure=Budget(iterations=runs))
    for r in runners:
        r.deactivate()
    return LatencyResult(
        before_ms=float(np.median(tb)),
        after_ms=float(np.median(ta)),
        ratio=float(np.median(ta / tb)),
        runs=runs,
        warmup=warmup,
        threads=threads,
    )


# --------------------------------------------------------------------------------------------
# pipeline
# --------------------------------------------------------------------------------------------


def _apply(graph, name: str):
    """Run one registered pass; a pass that crashes on this model is a one-line error naming it."""
    try:
        return PASSES[name].fn(graph)
    except AcmixError:
        raise
    except Exception as exc:  # noqa: BLE001 - report which pass, not a traceback
        raise AcmixError(
            f"pass '{name}' failed on this model ({type(exc).__name__}: {str(exc).strip()[:200]}); "
            f"run without it: --skip {name}"
        ) from exc


class _Gate:
    """The parity gate for one input model: its seeded inputs and reference outputs."""

    def __init__(self, model: onnx.ModelProto, model_bytes: bytes, feeds: dict[str, np.ndarray]) -> None:
        self.feeds = feeds
        try:
            self.reference = run_model(model_bytes, feeds)
        except AcmixError as exc:
            raise AcmixError(f"the input model does not run in ONNX Runtime: {exc}") from None
        try:  # hold the output to the checker only if the input passes it
            onnx.checker.check_model(model)
            self.checker = True
        except Exception:  # noqa: BLE001
            self.checker = False

    def results(
        self, model: onnx.ModelProto, model_bytes: bytes | None = None
    ) -> tuple[list[parity.ParityResult], str | None]:
        """(comparisons, reason the gate fails or None)."""
        try:
            results = check_parity(model, self.feeds, self.reference, self.checker, model_bytes)
        except ParityError as exc:
            return [], str(exc)
        failed = [r.line() for r in results if not r.passed]
        return results, ("; ".join(failed) if failed else None)

    def require(self, model: onnx.ModelProto, pass_name: str) -> list[parity.ParityResult]:
        results, reason = self.results(model)
        if reason is not None:
            raise ParityError(f"parity gate failed after pass '{pass_name}': {reason}")
        return results


def _find_culprit(model: onnx.ModelProto, names: list[str], gate: _Gate) -> None:
    """Re-run the passes one at a time with the gate after each; raises naming the first failure."""
    graph = gs.import_onnx(model)
    for name in names:
        graph = _apply(graph, name)
        gate.require(to_model(graph, model), name)


def optimize_model(
    model: onnx.ModelProto,
    passes: str | list[str] | tuple[str, ...] | None = None,
    skip: str | list[str] | tuple[str, ...] | None = None,
    debug: bool = False,
    latency_runs: int = 20,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    seed: int = 0,
    threads: int | None = None,
) -> tuple[onnx.ModelProto, OptimizeReport]:
    """Run graph passes on an in-memory model behind the parity gate.

    `passes` / `skip`: names (or comma lists) from acmix_deploy.passes.PASSES; default: the
    DEFAULT_ORDER pipeline. `debug` gates after every pass. `latency_runs=0` skips timing.
    Raises ParityError (naming the pass) when the optimized model no longer matches.
    """
    optimized, _, report = _optimize(model, passes, skip, debug, latency_runs, input_shapes, seed, threads)
    return optimized, report


def _optimize(
    model: onnx.ModelProto,
    passes: str | list[str] | tuple[str, ...] | None,
    skip: str | list[str] | tuple[str, ...] | None,
    debug: bool,
    latency_runs: int,
    input_shapes: dict[str, tuple[int, ...]] | None,
    seed: int,
    threads: int | None,
    bytes_before: int | None = None,
) -> tuple[onnx.ModelProto, bytes, OptimizeReport]:
    """optimize_model, also returning the optimized model serialized. `bytes_before` (the input
    file's size with its external data) replaces the serialized input's size in the report."""
    names = resolve_passes(passes, skip)
    if model.ByteSize() > TWO_GB:
        raise AcmixError("models over 2 GB are not supported by optimize (protobuf limit)")
    feeds = make_inputs(model, seed, input_shapes)
    before_bytes = model.SerializeToString()
    gate = _Gate(model, before_bytes, feeds)

    graph = gs.import_onnx(model)
    records: list[PassRecord] = []
    for name in names:
        n_before = len(graph.nodes)
        t0 = time.perf_counter()
        graph = _apply(graph, name)
        record = PassRecord(name, time.perf_counter() - t0, n_before, len(graph.nodes))
        if debug:
            record.parity = [r.line() for r in gate.require(to_model(graph, model), name)]
        records.append(record)

    optimized = to_model(graph, model)
    after_bytes = optimized.SerializeToString()
    results, reason = gate.results(optimized, after_bytes)
    if reason is not None:
        _find_culprit(model, names, gate)  # raises naming the pass; the rest is a fallback
        raise ParityError(f"parity gate failed after the passes {', '.join(names)}: {reason}")

    report = OptimizeReport(
        passes=records,
        ops_before=op_counts(model),
        ops_after=op_counts(optimized),
        bytes_before=len(before_bytes) if bytes_before is None else bytes_before,
        bytes_after=len(after_bytes),
        parity=[r.line() for r in results],
        input_shapes={k: list(v.shape) for k, v in feeds.items()},
        unchanged=graph_signature(model) == graph_signature(optimized),
    )
    if latency_runs > 0 and not report.unchanged:
        report.latency = measure_latency(before_bytes, after_bytes, feeds, runs=latency_runs, threads=threads)
    return optimized, after_bytes, report


def graph_signature(model: onnx.ModelProto) -> tuple:
    """What the passes can change: every node's op, attributes and wiring, every initializer's bytes
    (node names and order left out: the graph library renames and re-sorts without changing anything)."""
    import hashlib

    nodes = sorted(
        (n.op_type, n.domain, tuple(n.input), tuple(n.output), tuple(a.SerializeToString() for a in n.attribute))
        for n in model.graph.node
    )
    inits = sorted(
        (t.name, t.data_type, tuple(t.dims), hashlib.sha256(t.SerializeToString()).hexdigest())
        for t in model.graph.initializer
    )
    return tuple(nodes), tuple(inits)


def _model_name(model_name: str | None, path: str | os.PathLike[str]) -> str:
    from acmix_deploy.onnxio import load_model as load_light, model_name as name_of

    return model_name or name_of(load_light(path, load_external_data=False), path)


def default_output(in_path: str | os.PathLike[str]) -> Path:
    """<folder>/<stem>.opt.onnx next to the input."""
    p = Path(in_path)
    stem = p.name[: -len(".onnx")] if p.name.endswith(".onnx") else p.stem
    return p.with_name(f"{stem}.opt.onnx")


def optimize_file(
    in_path: str | os.PathLike[str] | None = None,
    out_path: str | os.PathLike[str] | None = None,
    passes: str | list[str] | tuple[str, ...] | None = None,
    skip: str | list[str] | tuple[str, ...] | None = None,
    debug: bool = False,
    workspace: str | os.PathLike[str] | None = None,
    latency_runs: int = 20,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    model_name: str | None = None,
    seed: int = 0,
    threads: int | None = None,
) -> OptimizeReport:
    """Optimize an ONNX file (default: the newest ONNX export in the workspace, optionally of
    `model_name`) and write it atomically to `out_path` (default: <stem>.opt.onnx beside it).
    A workspace input's result is recorded as an ONNX_OPTIMIZED artifact of the same model."""
    artifact = None
    if in_path is None:
        artifact = ws.newest(ws.ONNX, model=model_name, workspace=workspace)
        in_path = artifact.path
    from acmix_deploy.fileio import check_collisions, check_destination

    out = Path(out_path) if out_path is not None else default_output(in_path)
    check_destination(out, "-o")
    check_collisions({"input": in_path}, {"-o": out})
    if artifact is not None:
        ws.check_manifest(workspace)
    model, size_before = load_model(in_path)
    _, data, report = _optimize(
        model, passes, skip, debug, latency_runs, input_shapes, seed, threads, bytes_before=size_before
    )
    report.input = str(in_path)
    report.from_workspace = artifact is not None
    if report.unchanged:  # e.g. an export, which already ran the passes: no identical copy
        return report
    write_bytes_atomic(out, data)  # report.bytes_after is len(data): the written file's size
    report.output = str(out)
    if ws.is_inside(out, workspace):  # the recording rule of every command: outputs inside the workspace
        report.model = artifact.model if artifact is not None else _model_name(model_name, in_path)
        ws.record(
            ws.ONNX_OPTIMIZED,
            report.model,
            out,
            meta={
                "source": str(Path(in_path).resolve()),
                "passes": [p.name for p in report.passes],
                "parity": report.parity,
            },
            workspace=workspace,
        )
    return report
