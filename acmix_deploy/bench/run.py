"""bench(): time backends x batch sizes for one model (and optionally a baseline, interleaved).

Rules that make the numbers comparable (DESIGN.md section 4):

* a model and its baseline are timed in the same process, interleaved round by round on the same
  backend, with ONNX Runtime thread spinning off (spinning sessions steal each other's cores);
* thread counts are fixed (default: every CPU this process may use) and recorded;
* the median is the headline; ratio = median over rounds of model time / baseline time (the two
  samples of a round run back to back), same backend and batch;
* peak memory is measured per backend in a separate child process, after all timing is done.
"""

from __future__ import annotations

import os
import shlex
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from acmix_deploy.bench.machine import machine_info, usable_cpus
from acmix_deploy.bench.memory import MemoryStats, measure_memory
from acmix_deploy.bench.sources import (
    DEFAULT_IMG_SIZE, ModelSource, Resolver, label_for, resolve_baseline, resolve_target,
)
from acmix_deploy.bench.stats import CV_WARN, LatencyStats, median_ratio, paired_ratio, summarize
from acmix_deploy.runners.timing import Budget, Timed, time_interleaved
from acmix_deploy.errors import AcmixError, first_line
from acmix_deploy.runners import BackendUnavailable, RunnerOptions, canonical_backend, create_runner, cuda_available

SCHEMA_VERSION = "1.0"
DEFAULT_DURATION_S = 10.0
# Changes the default timed seconds per backend and batch (a quick look, CI): an explicit
# --duration-s / --iterations still wins.
DURATION_ENV = "ACMIX_DEPLOY_BENCH_DURATION_S"


def default_duration_s() -> float:
    raw = os.environ.get(DURATION_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_DURATION_S
    try:
        value = float(raw)
    except ValueError:
        raise AcmixError(f"{DURATION_ENV} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise AcmixError(f"{DURATION_ENV} must be > 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class BenchConfig:
    """The resolved settings of one benchmark (everything needed to rerun it)."""

    model: str | None
    onnx: str | None
    engine: str | None
    backends: tuple[str, ...]
    batches: tuple[int, ...]
    img_size: int | None
    warmup_s: float | None
    warmup_iterations: int | None
    duration_s: float | None
    iterations: int | None
    threads: int
    baseline: str | None
    shift: str | None
    cuda_graph: bool
    include_transfers: bool
    memory: bool
    device: str

    def command(self) -> str:
        """The `acmix-deploy bench` command line that reproduces this configuration."""
        args = ["acmix-deploy", "bench"]
        for flag, value in (("--model", self.model), ("--onnx", self.onnx), ("--engine", self.engine)):
            if value is not None:
                args += [flag, str(value)]
        for b in self.backends:
            args += ["--backend", b]
        args += ["--batch", ",".join(str(b) for b in self.batches)]
        if self.img_size is not None:
            args += ["--img-size", str(self.img_size)]
        if self.warmup_iterations is not None:
            args += ["--warmup-iterations", str(self.warmup_iterations)]
        else:
            args += ["--warmup-s", f"{self.warmup_s:g}"]
        if self.iterations is not None:
            args += ["--iterations", str(self.iterations)]
        else:
            args += ["--duration-s", f"{self.duration_s:g}"]
        args += ["--threads", str(self.threads), "--device", self.device]
        if self.baseline is not None:
            args += ["--baseline", self.baseline]
        if self.shift is not None:
            args += ["--shift", self.shift]
        if self.cuda_graph:
            args.append("--cuda-graph")
        if self.include_transfers:
            args.append("--include-transfers")
        if not self.memory:
            args.append("--no-memory")
        return shlex.join(args)


@dataclass
class BenchRow:
    """One (role, backend, batch) cell; status "ok", "unavailable" or "failed" (then `reason`)."""

    role: str  # "model" or "baseline"
    model: str
    backend: str
    batch: int
    status: str
    reason: str | None = None
    stats: LatencyStats | None = None
    memory: MemoryStats | None = None
    memory_error: str | None = None
    ratio: float | None = None  # model rows: median over rounds of model_ms / baseline_ms
    median_ratio: float | None = None  # model rows: model median / baseline median
    samples_ms: np.ndarray | None = field(default=None, repr=False)  # raw latencies (not in reports)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class BenchResult:
    """Everything one bench() produced; report.to_json_dict() gives its versioned JSON form."""

    config: BenchConfig
    rows: list[BenchRow]
    models: dict[str, dict[str, Any]]
    machine: dict[str, Any]
    interleaved: bool
    ort_spinning: bool
    created: str
    notes: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # which workspace files were picked, and why (also in notes)
    schema_version: str = SCHEMA_VERSION

    def get(self, backend: str, batch: int, role: str = "model") -> BenchRow | None:
        for row in self.rows:
            if row.backend == backend and row.batch == batch and row.role == role:
                return row
        return None

    def noisy_rows(self) -> list[BenchRow]:
        return [r for r in self.rows if r.stats is not None and r.stats.noisy]

    def to_dict(self) -> dict[str, Any]:
        from acmix_deploy.bench.report import to_json_dict

        return to_json_dict(self)


def _validate(
    batches: Sequence[int],
    warmup_s: float | None,
    warmup_iterations: int | None,
    duration_s: float | None,
    iterations: int | None,
    threads: int | None,
    device: str,
) -> None:
    if not batches:
        raise AcmixError("give at least one batch size")
    if any(int(b) < 1 for b in batches):
        raise AcmixError(f"batch sizes must be >= 1, got {list(batches)}")
    if duration_s is not None and iterations is not None:
        raise AcmixError("give either --duration-s or --iterations, not both")
    if iterations is not None and iterations < 1:
        raise AcmixError("--iterations must be >= 1")
    if duration_s is not None and duration_s <= 0:
        raise AcmixError("--duration-s must be > 0")
    if warmup_s is not None and warmup_s < 0 or warmup_iterations is not None and warmup_iterations < 0:
        raise AcmixError("warm-up must be >= 0")
    if threads is not None and threads < 1:
        raise AcmixError("--threads must be >= 1")
    if device not in ("auto", "cpu", "cuda"):
        raise AcmixError("--device must be auto, cpu or cuda")


def default_backends(source: ModelSource) -> list[str]:
    if source.engine_path is not None and source.onnx_path is not None:  # a workspace model: both files
        return ["tensorrt", "onnxruntime"]
    if source.torch_factory is not None:
        return ["torch-eager", "onnxruntime"]
    if source.onnx_path is not None or source.onnx_factory is not None:
        return ["onnxruntime"]
    return ["tensorrt"]


def _backends(names: Sequence[str] | None, source: ModelSource) -> tuple[str, ...]:
    out: list[str] = []
    for name in names or default_backends(source):
        try:
            key = canonical_backend(name)
        except ValueError as exc:
            raise AcmixError(str(exc)) from None
        if key not in out:
            out.append(key)
    return tuple(out)


def _time_cell(
    runners: dict[str, Any], batch: int, warmup: Budget, measure: Budget
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Prepare and time the runners of one backend at one batch; failures are per role."""
    failed: dict[str, str] = {}
    items: dict[str, Timed] = {}
    for role, runner in runners.items():
        try:
            x = runner.prepare(batch)
        except Exception as exc:  # a backend that cannot run this model/batch is a row, not a crash
            failed[role] = first_line(exc)
            continue
        items[role] = Timed(
            fn=lambda r=runner, x=x: r(x),
            cuda=runner.device == "cuda",
            sync=runner.synchronize,
        )
    samples: dict[str, np.ndarray] = {}
    if items:
        try:
            arrays = time_interleaved(list(items.values()), warmup, measure)
            samples = dict(zip(items, arrays))
        except Exception as exc:
            for role in items:
                failed[role] = first_line(exc)
    return samples, failed


def _bench_backend(
    backend: str,
    sources: dict[str, ModelSource],
    opts_by_role: dict[str, RunnerOptions],
    batches: Sequence[int],
    warm: Budget,
    meas: Budget,
    say: Callable[[str], None],
    notes: list[str],
) -> list[BenchRow]:
    """All rows of one backend: build its runners (model, baseline), time every batch, close them.
    The runners' warnings are appended to `notes`."""
    rows: list[BenchRow] = []
    runners: dict[str, Any] = {}
    for role, src in sources.items():
        try:
            say(f"{backend}: loading {src.label}")
            runners[role] = create_runner(backend, src, opts_by_role[role])
            notes += [f"{backend} {src.label}: {w}" for w in runners[role].warnings]
        except BackendUnavailable as exc:
            rows += [BenchRow(role, src.label, backend, b, "unavailable", str(exc)) for b in batches]
        except Exception as exc:  # a broken backend is reported, the others still run
            rows += [BenchRow(role, src.label, backend, b, "failed", first_line(exc)) for b in batches]
    try:
        for batch in batches if runners else ():
            say(f"{backend}: timing batch {batch}")
            samples, failed = _time_cell(runners, batch, warm, meas)
            cell: dict[str, BenchRow] = {}
            for role in runners:
                label = sources[role].label
                if role in failed:
                    cell[role] = BenchRow(role, label, backend, batch, "failed", failed[role])
                else:
                    stats = summarize(samples[role], batch)
                    cell[role] = BenchRow(role, label, backend, batch, "ok", stats=stats, samples_ms=samples[role])
            m, b = cell.get("model"), cell.get("baseline")
            if m and b and m.ok and b.ok:
                m.ratio = paired_ratio(samples["model"], samples["baseline"])
                m.median_ratio = median_ratio(m.stats, b.stats)
            rows += [cell[r] for r in sources if r in cell]
    finally:
        for runner in runners.values():
            runner.close()
    return rows


def _measure_memory(
    rows: list[BenchRow],
    sources: dict[str, ModelSource],
    opts_by_role: dict[str, RunnerOptions],
    say: Callable[[str], None],
) -> None:
    """Peak memory of every measured row, each in its own child process (after all timing)."""
    for row in rows:
        if not row.ok:
            continue
        say(f"{row.backend}: peak memory of {row.model} at batch {row.batch} (child process)")
        try:
            row.memory = measure_memory(row.backend, sources[row.role], opts_by_role[row.role], row.batch)
        except Exception as exc:  # memory is extra information: its failure must not lose the timings
            row.memory_error = first_line(exc)


def _sources(
    model: str | None, onnx, engine, img_size: int | None, shift: str | None, baseline: str | None,
    resolver: Resolver | None, workspace, say: Callable[[str], None],
) -> tuple[ModelSource, ModelSource | None, list[str]]:
    """(model source, baseline source or None, lines saying which workspace files were picked and why).
    With no input: the newest workspace model and its registry baseline (bench.workspace_pick)."""
    base_source = None
    if model is None and onnx is None and engine is None and shift is None:
        from acmix_deploy.bench.workspace_pick import pick

        chosen = pick(workspace, resolver, with_baseline=baseline is None, say=say)
        source, inputs, base_source = chosen.model, chosen.lines, chosen.baseline
        if img_size is not None and source.input_size != (img_size, img_size):
            raise AcmixError(f"the workspace's {source.label} files take {source.input_size[0]} px images, not {img_size}")
    else:
        source, found = resolve_target(model, onnx, engine, img_size, shift, resolver, workspace)
        inputs = found.splitlines() if found else []
    if baseline:
        base_source = resolve_baseline(baseline, img_size, resolver)
        if shift is not None and base_source.name is not None and base_source.name == source.name:
            base_source.label = label_for(base_source.name, "group")  # the paper's Table 7: shift form vs shift form
    return source, base_source, inputs


def _config(model, onnx, engine, source, found: bool, base_source, backend_list: list[str], batches, img_size,
            warmup_s, warmup_iterations, duration_s, iterations, n_threads: int, baseline, shift, cuda_graph: bool,
            include_transfers: bool, memory: bool, dev: str) -> BenchConfig:
    """What was asked, resolved (the files used, the default durations, the device): the report's header."""
    return BenchConfig(
        model=model,
        onnx=str(onnx) if onnx is not None else (str(source.onnx_path) if found and source.onnx_path else None),
        engine=str(engine) if engine is not None else (str(source.engine_path) if found and source.engine_path else None),
        backends=backend_list,
        batches=tuple(dict.fromkeys(int(b) for b in batches)),
        img_size=img_size,
        warmup_s=None if warmup_iterations is not None else (warmup_s if warmup_s is not None else 2.0),
        warmup_iterations=warmup_iterations,
        duration_s=None if iterations is not None else (duration_s or default_duration_s()),
        iterations=iterations,
        threads=n_threads,
        baseline=baseline or (base_source.label if base_source is not None else None),
        shift=shift,
        cuda_graph=cuda_graph,
        include_transfers=include_transfers,
        memory=memory,
        device=dev,
    )


def _budgets(config: BenchConfig) -> tuple[Budget, Budget]:
    """(warm-up, measurement) budgets: iteration counts where given, else seconds."""
    if config.warmup_iterations is not None:
        warm = Budget(iterations=config.warmup_iterations)
    else:
        warm = Budget(seconds=config.warmup_s, min_iterations=1)
    if config.iterations is not None:
        return warm, Budget(iterations=config.iterations)
    return warm, Budget(seconds=config.duration_s, min_iterations=5)


def _option_notes(config: BenchConfig, interleaved: bool) -> list[str]:
    """What the options mean on this machine (interleaving, GPU-only flags without a GPU)."""
    notes = []
    if interleaved:
        notes.append(
            "model and baseline timed interleaved in one process (order alternating each round), "
            f"ONNX Runtime spinning off, {config.threads} threads"
        )
    if config.cuda_graph and config.device != "cuda":
        notes.append("--cuda-graph has no effect without a CUDA device")
    elif config.cuda_graph and "tensorrt" in config.backends:
        notes.append("--cuda-graph: the tensorrt backend enqueues the engine directly (no graph replay)")
    if config.include_transfers and config.device != "cuda":
        notes.append("--include-transfers only changes GPU backends (CPU backends have no copies to time)")
    return notes


def _time_all(config: BenchConfig, sources: dict[str, ModelSource], spinning: bool,
              say: Callable[[str], None], notes: list[str]) -> list[BenchRow]:
    """Every row: each backend's runners timed over the batches, then memory; lazily exported ONNX
    files live in a temporary folder for the run."""
    warm, meas = _budgets(config)
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="acmix-bench-") as tmp:
        base_opts = RunnerOptions(threads=config.threads, device=config.device, spinning=spinning,
                                  cuda_graph=config.cuda_graph, include_transfers=config.include_transfers,
                                  workdir=tmp)
        opts_by_role = {
            role: replace(base_opts, input_size=src.input_size or (DEFAULT_IMG_SIZE,) * 2) for role, src in sources.items()
        }
        for backend in config.backends:
            rows += _bench_backend(backend, sources, opts_by_role, config.batches, warm, meas, say, notes)
        if config.memory:
            _measure_memory(rows, sources, opts_by_role, say)
    rows.sort(key=lambda r: (config.backends.index(r.backend), r.batch, 0 if r.role == "model" else 1))
    return rows


def _closing_notes(result: BenchResult) -> None:
    """Warnings that need the timings: torch's spinning OpenMP threads, noisy rows."""
    torch_timed = any(r.ok and r.backend.startswith("torch") for r in result.rows)
    if torch_timed and result.config.device == "cpu" and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        result.notes.append(
            "torch on CPU: idle OpenMP threads spin (OMP_WAIT_POLICY is not PASSIVE); on a shared or loaded "
            "machine start with OMP_WAIT_POLICY=PASSIVE for stable torch timings"
        )
    for row in result.noisy_rows():
        result.notes.append(
            f"noisy: {row.model} on {row.backend} at batch {row.batch} has CV {row.stats.cv:.1%} "
            f"(> {CV_WARN:.0%}); run longer (--duration-s), on a quieter machine, or with fewer --threads "
            "than idle cores"
        )


def bench(
    model: str | None = None,
    onnx: str | Path | None = None,
    engine: str | Path | None = None,
    backends: Sequence[str] | None = None,
    batches: Sequence[int] = (1,),
    img_size: int | None = None,
    warmup_s: float | None = 2.0,
    warmup_iterations: int | None = None,
    duration_s: float | None = None,
    iterations: int | None = None,
    threads: int | None = None,
    baseline: str | None = None,
    shift: str | None = None,
    cuda_graph: bool = False,
    include_transfers: bool = False,
    memory: bool = True,
    device: str = "auto",
    workspace: str | Path | None = None,
    resolver: Resolver | None = None,
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Benchmark one model over backends x batch sizes; see the module docstring for the rules.

    With no model/onnx/engine, the newest engine (else ONNX file) in the workspace is used.
    `resolver` turns model names into ModelSources (default: the model registry).
    """
    _validate(batches, warmup_s, warmup_iterations, duration_s, iterations, threads, device)
    say = progress or (lambda _msg: None)
    source, base_source, inputs = _sources(model, onnx, engine, img_size, shift, baseline, resolver, workspace, say)
    for line in inputs:
        say(line)
    backend_list = _backends(backends, source)
    dev = ("cuda" if cuda_available() else "cpu") if device == "auto" else device
    interleaved = base_source is not None
    config = _config(model, onnx, engine, source, bool(inputs), base_source, backend_list, batches, img_size,
                     warmup_s, warmup_iterations, duration_s, iterations, threads or usable_cpus(), baseline, shift,
                     cuda_graph, include_transfers, memory, dev)
    sources = {"model": source, **({"baseline": base_source} if base_source else {})}
    notes = list(inputs) + _option_notes(config, interleaved)
    rows = _time_all(config, sources, not interleaved, say, notes)
    result = BenchResult(
        config=config,
        rows=rows,
        models={role: src.describe() for role, src in sources.items()},
        machine=machine_info(),
        interleaved=interleaved,
        ort_spinning=not interleaved,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        notes=notes,
        inputs=list(inputs),
    )
    _closing_notes(result)
    return result
