"""Build a TensorRT engine from ONNX: one code path for TensorRT 10.x / 11.x and TensorRT-RTX.

* Strongly typed networks: the precision is the ONNX graph's (see acmix_deploy.precision). The
  STRONGLY_TYPED creation flag is set where the API has it (TensorRT 10.x, TensorRT-RTX); TensorRT
  11 builds nothing else and may not expose the flag.
* One optimization profile over the batch range; a static-batch ONNX fixes it to its batch.
* Timing cache and builder optimisation level only for `tensorrt`: in TensorRT-RTX the timing cache
  is a deprecated no-op and asking for one queries the GPU (breaking CPU-only builds), and kernels
  are chosen when the engine is loaded on the target GPU, so both are ignored with a warning.
* TensorRT-RTX builds ahead of time without a GPU; its target compute capabilities can be set
  (default: Ampere and later, 8.0+; Turing 7.5 only on request) and are recorded in the sidecar.
* Engine and sidecar are written atomically, together.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import onnx

import acmix_deploy
from acmix_deploy import workspace as ws
from acmix_deploy.errors import AcmixError
from acmix_deploy.fileio import atomic_path, sha256_file
from acmix_deploy.onnxio import load_model, model_name
from acmix_deploy.runners.trt_import import TENSORRT, TENSORRT_RTX, load_trt, make_logger
from acmix_deploy.runners.gpu import gpu_info
from acmix_deploy.runners.sidecar import (
    Sidecar, TensorInfo, format_capability, parse_capability, sidecar_path, stored_onnx_path,
)
from acmix_deploy.workspace import default_output
from acmix_deploy.validate import parse_size  # noqa: F401 - also this module's public name


@dataclass
class BuildResult:
    path: Path
    sidecar_path: Path
    sidecar: Sidecar
    build_seconds: float
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def onnx_precision(model: onnx.ModelProto) -> str:
    """int8 when the graph has Q/DQ, fp16 when it holds fp16 weights or casts, else fp32."""
    ops = {n.op_type for n in model.graph.node}
    if "QuantizeLinear" in ops or "DequantizeLinear" in ops:
        return "int8"
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        return "fp16"
    for node in model.graph.node:
        if node.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT16 for a in node.attribute):
            return "fp16"
    return "fp32"


# ----------------------------------------------------------------------- TensorRT glue (lazy)


def _make_monitor(trt: ModuleType, progress):
    """An IProgressMonitor that mirrors TensorRT's build phases as rich progress bars."""

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._tasks: dict[str, Any] = {}
            self._depth: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps) -> None:
            depth = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
            self._depth[phase_name] = depth
            self._tasks[phase_name] = progress.add_task("  " * depth + phase_name, total=max(1, num_steps))

        def step_complete(self, phase_name, step) -> bool:
            task = self._tasks.get(phase_name)
            if task is not None:
                progress.update(task, completed=step + 1)
            return True  # False would cancel the build

        def phase_finish(self, phase_name) -> None:
            task = self._tasks.pop(phase_name, None)
            if task is not None:
                progress.remove_task(task)

    return _Monitor()


def _parser_errors(parser) -> str:
    msgs = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        desc = err.desc() if hasattr(err, "desc") else str(err)
        node = err.node_name() if hasattr(err, "node_name") else ""
        op = err.node_operator() if hasattr(err, "node_operator") else ""
        msgs.append(f"{desc}" + (f" (node {node}{f', {op}' if op else ''})" if node else ""))
    return "; ".join(msgs[:3]) + (f" (+{len(msgs) - 3} more)" if len(msgs) > 3 else "")


def _dtype_name(dtype) -> str:
    names = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "UINT8": "uint8",
             "INT32": "int32", "INT64": "int64", "BOOL": "bool", "FP8": "float8"}
    return names.get(getattr(dtype, "name", str(dtype).rsplit(".", 1)[-1]), str(dtype))


def _capability_enum(trt: ModuleType, cc: str):
    if cc.lower() == "current":
        return trt.ComputeCapability.CURRENT
    major, minor = parse_capability(cc)
    member = getattr(trt.ComputeCapability, f"SM{major}{minor}", None)
    if member is None:
        known = [m for m in trt.ComputeCapability.__members__ if m.startswith("SM")]
        raise AcmixError(
            f"TensorRT-RTX cannot target compute capability {major}.{minor}; it knows "
            + ", ".join(f"{m[2:-1]}.{m[-1]}" for m in known)
        )
    return member


# ------------------------------------------------------------------------------------- build


def _profile_shapes(
    name: str, dims: list[int], min_batch: int, opt_batch: int, max_batch: int, notes: list[str]
) -> dict[str, list[int]]:
    if any(d < 0 for d in dims[1:]):
        raise AcmixError(
            f"input {name} has dynamic dimensions besides the batch {dims}; export it with a fixed image size"
        )
    if dims and dims[0] >= 0:
        notes.append(
            f"static-batch ONNX: the engine takes batch {dims[0]} only "
            "(export with a dynamic batch for a --min-batch/--max-batch range)"
        )
        return {"min": list(dims), "opt": list(dims), "max": list(dims)}
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise AcmixError(f"need 1 <= --min-batch ({min_batch}) <= --opt-batch ({opt_batch}) <= --max-batch ({max_batch})")
    rest = list(dims[1:])
    return {"min": [min_batch, *rest], "opt": [opt_batch, *rest], "max": [max_batch, *rest]}


def default_engine_path(onnx_path: Path, model: str, flavour: str, workspace: str | os.PathLike[str] | None) -> Path:
    return default_output(onnx_path, model, f".{'rtx' if flavour == TENSORRT_RTX else 'trt'}.engine", workspace)


def build_engine(
    onnx_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 32,
    trt_workspace: str | int = "4GiB",
    runtime: str = "auto",
    timing_cache: str | os.PathLike[str] | None = None,
    opt_level: int | None = None,
    compute_capabilities: list[str] | None = None,
    model: str | None = None,
    workspace: str | os.PathLike[str] | None = None,
    progress: bool = True,
    record: bool = True,
) -> BuildResult:
    """ONNX -> serialized engine + `<engine>.json` sidecar (see the module docstring).

    `trt_workspace` is TensorRT's scratch-memory limit; `workspace` the acmix-deploy artifact folder the
    engine is recorded in (the CLI's --trt-workspace / --workspace). `compute_capabilities` (TensorRT-RTX only): e.g. ["8.6", "8.9"].
    """
    onnx_path = Path(onnx_path)
    proto = load_model(onnx_path, load_external_data=False)  # one-line error if missing or unreadable
    trt, flavour, version = load_trt(runtime)
    pool = parse_size(trt_workspace)
    if opt_level is not None and not 0 <= opt_level <= 5:
        raise AcmixError(f"--opt-level must be 0..5, got {opt_level}")
    name = model or model_name(proto, onnx_path)
    dest = Path(output) if output else default_engine_path(onnx_path, name, flavour, workspace)
    _check_destinations(onnx_path, dest, timing_cache, workspace if record else None, record)

    net = _parse(trt, onnx_path)
    config = net.builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, pool)
    if hasattr(trt, "ProfilingVerbosity"):  # layer names and tactics for `inspect`
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    io = _profile(net, config, min_batch, opt_batch, max_batch)
    host = gpu_info()
    settings = _Settings(timing_cache, opt_level)
    if flavour == TENSORRT_RTX:
        _rtx_settings(trt, config, host, compute_capabilities, settings)
    else:
        _trt_settings(config, host, compute_capabilities, settings)

    data, seconds = _serialize(trt, net, config, progress, onnx_path)
    sidecar = Sidecar(
        model=name, precision=onnx_precision(proto), inputs=io.inputs, outputs=io.outputs, profiles=io.profiles,
        onnx_path=str(onnx_path.resolve()),  # as read_sidecar returns it; the file stores it relative
        onnx_sha256=sha256_file(onnx_path), engine_sha256=hashlib.sha256(data).hexdigest(),
        trt_flavour=flavour, trt_version=version,
        gpu_name=host.name if (flavour == TENSORRT and host) else None,
        gpu_compute_capability=host.cc if (flavour == TENSORRT and host) else None,
        target_compute_capabilities=settings.targets, build_seconds=round(seconds, 3),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), toolkit_version=acmix_deploy.__version__,
        build_options={
            "strongly_typed": net.strongly_typed or flavour == TENSORRT, "workspace_bytes": pool,
            "opt_level": settings.opt_level,
            "timing_cache": str(Path(settings.timing_cache).resolve()) if settings.timing_cache else None,
            "build_host_gpu": f"{host.name} ({host.cc})" if host else None,
        },
    )
    _write(dest, data, sidecar, onnx_path, config, settings.timing_cache)
    if record and ws.is_inside(dest, workspace):
        ws.record(
            ws.ENGINE, name, dest,
            {"precision": sidecar.precision, "runtime": flavour, "version": version,
             "batch": [min_batch, opt_batch, max_batch], "onnx": str(onnx_path.resolve())},
            workspace,
        )
    return BuildResult(dest, sidecar_path(dest), sidecar, seconds, settings.warnings, io.notes)


@dataclass
class _Network:
    """A parsed strongly typed network and the objects that must outlive it."""

    logger: Any
    builder: Any
    network: Any
    parser: Any
    strongly_typed: bool


def _parse(trt: ModuleType, onnx_path: Path) -> _Network:
    """Builder + strongly typed network (where the flag exists) + the ONNX parser's verdict."""
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(1 << int(flag) if flag is not None else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise AcmixError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {_parser_errors(parser)}")
    return _Network(logger, builder, network, parser, flag is not None)


@dataclass
class _IO:
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    profiles: dict[str, dict[str, list[int]]]
    notes: list[str]


def _profile(net: _Network, config, min_batch: int, opt_batch: int, max_batch: int) -> _IO:
    """One optimization profile over the batch range (for inputs with a dynamic dimension); the
    network's inputs and outputs as the sidecar records them."""
    network, notes = net.network, []
    inputs, profiles = [], {}
    profile = net.builder.create_optimization_profile()
    needs_profile = False
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)
        shapes = _profile_shapes(tensor.name, dims, min_batch, opt_batch, max_batch, notes)
        profiles[tensor.name] = shapes
        inputs.append(TensorInfo(tensor.name, _dtype_name(tensor.dtype), dims))
        if any(d < 0 for d in dims):
            needs_profile = True
            profile.set_shape(tensor.name, shapes["min"], shapes["opt"], shapes["max"])
    if needs_profile:
        config.add_optimization_profile(profile)
    outputs = [
        TensorInfo(network.get_output(i).name, _dtype_name(network.get_output(i).dtype), list(network.get_output(i).shape))
        for i in range(network.num_outputs)
    ]
    return _IO(inputs, outputs, profiles, notes)


@dataclass
class _Settings:
    """The runtime-specific options as applied (ignored ones reset to None, with a warning)."""

    timing_cache: str | os.PathLike[str] | None
    opt_level: int | None
    targets: list[str] | None = None
    warnings: list[str] = field(default_factory=list)


def _rtx_settings(trt: ModuleType, config, host, compute_capabilities: list[str] | None, s: _Settings) -> None:
    """TensorRT-RTX: no timing cache or optimisation level (kernels are picked on the target GPU);
    target compute capabilities are set and recorded."""
    if s.timing_cache is not None:
        s.warnings.append("TensorRT-RTX has no timing cache (a deprecated no-op that needs a GPU): --timing-cache ignored")
        s.timing_cache = None
    if s.opt_level is not None:
        s.warnings.append("TensorRT-RTX picks kernels when the engine is loaded on its GPU: --opt-level ignored")
        s.opt_level = None
    if not compute_capabilities:
        return
    wanted = [c.strip() for c in compute_capabilities if c.strip()]
    if any(c.lower() == "current" for c in wanted):
        if host is None:
            raise AcmixError("--compute-capability current needs a GPU here; name the target, e.g. 8.6")
        wanted = [host.cc]
    enums = [_capability_enum(trt, c) for c in wanted]
    config.num_compute_capabilities = len(enums)
    for i, member in enumerate(enums):
        if not config.set_compute_capability(member, i):
            raise AcmixError(f"TensorRT-RTX refused target compute capability {wanted[i]}")
    s.targets = [format_capability(parse_capability(c)) for c in wanted]


def _trt_settings(config, host, compute_capabilities: list[str] | None, s: _Settings) -> None:
    """tensorrt: optimisation level and timing cache; it builds for this machine's GPU."""
    if compute_capabilities:
        s.warnings.append("--compute-capability is a TensorRT-RTX option; tensorrt builds for this machine's GPU")
    if s.opt_level is not None:
        config.builder_optimization_level = s.opt_level
    if s.timing_cache is not None:
        cache_path = Path(s.timing_cache)
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    if host is None:
        s.warnings.append("no GPU detected: tensorrt needs one to build (use --runtime tensorrt-rtx to build without)")


def _serialize(trt: ModuleType, net: _Network, config, progress: bool, onnx_path: Path) -> tuple[bytes, float]:
    """(engine bytes, build seconds); TensorRT's last errors in one line when it builds nothing."""
    start = time.perf_counter()
    serialized = _build(trt, net.builder, net.network, config, progress)
    seconds = time.perf_counter() - start
    if serialized is None:
        detail = "; ".join(net.logger.errors[-3:]) or "no error message from TensorRT"
        raise AcmixError(f"TensorRT could not build an engine from {onnx_path.name}: {detail}")
    return bytes(serialized), seconds


def _write(dest: Path, data: bytes, sidecar: Sidecar, onnx_path: Path, config, timing_cache) -> None:
    """Engine and sidecar atomically, together; then the updated timing cache."""
    with atomic_path(dest) as tmp_engine, atomic_path(sidecar_path(dest)) as tmp_side:
        tmp_engine.write_bytes(data)
        tmp_side.write_text(replace(sidecar, onnx_path=stored_onnx_path(onnx_path, dest)).to_json())
    if timing_cache is not None:
        from acmix_deploy.fileio import write_bytes_atomic

        write_bytes_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))


def _check_destinations(
    onnx_path: Path, dest: Path, timing_cache: str | os.PathLike[str] | None,
    workspace: str | os.PathLike[str] | None, record: bool,
) -> None:
    """Engine, sidecar, timing cache and manifest: all writable and none of them the input, checked
    before the (long) build so that a refusal never leaves one half of an engine behind."""
    from acmix_deploy.fileio import check_collisions, check_destination

    side = sidecar_path(dest)
    check_destination(dest, "-o")
    check_destination(side, "sidecar")
    outputs = {"-o": dest, "sidecar": side}
    if timing_cache is not None:
        check_destination(timing_cache, "--timing-cache")
        check_collisions({"--onnx": onnx_path}, {"--timing-cache": timing_cache})
    check_collisions({"--onnx": onnx_path}, outputs)
    if record:
        ws.check_manifest(workspace)


def _build(trt: ModuleType, builder, network, config, progress: bool):
    """build_serialized_network with TensorRT's progress monitor (or a spinner) on the console."""
    if not progress:
        return builder.build_serialized_network(network, config)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if hasattr(trt, "IProgressMonitor") and hasattr(config, "progress_monitor"):
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
            console=console, transient=True,
        ) as bars:
            monitor = _make_monitor(trt, bars)
            config.progress_monitor = monitor
            try:
                return builder.build_serialized_network(network, config)
            finally:
                try:  # detach before `monitor` goes out of scope (TensorRT must not outlive it)
                    config.progress_monitor = None
                except TypeError:
                    pass
    with console.status("building the TensorRT engine ..."):
        return builder.build_serialized_network(network, config)
