"""ONNX paths: the verified export, the graph passes, fp16 conversion, and ONNX Runtime on every
execution provider this build has (CPU, CUDA, TensorRT), each checked against the torch reference
on the checked device.

The export runs without graph passes so that it is the same file with or without
onnx-graphsurgeon; the passes are their own row (on the export) and need onnx-graphsurgeon.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from acmix_deploy.gpucheck.context import Context
from acmix_deploy.gpucheck.core import NotAvailable, Outcome, Step, module_missing, parity_outcome, precision_outcome
from acmix_deploy.gpucheck.plan import ModelSpec

PROVIDERS = {
    "onnxruntime-cpu": "CPUExecutionProvider",
    "onnxruntime-cuda": "CUDAExecutionProvider",
    "onnxruntime-trt": "TensorrtExecutionProvider",
}


def _export_key(spec: ModelSpec, batch: int | None) -> str:
    import torch

    from acmix_deploy import __version__

    text = json.dumps([spec.name, spec.size, spec.overrides, batch, torch.__version__, __version__], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def export(ctx: Context, spec: ModelSpec) -> Outcome:
    """export_onnx (verified in ONNX Runtime; dynamic batch on CUDA, the parity batch in the dry mode);
    reused from the work folder when there."""
    from acmix_deploy.export import export_onnx

    batch = None if ctx.plan.dynamic_batch else ctx.plan.parity_batch
    path = ctx.workdir / f"{spec.name}_{spec.size}_{_export_key(spec, batch)}.onnx"
    if path.exists():
        ctx.exports[spec.label] = path
        return f"reused {path.name} from the work folder (checked against the reference below)", {
            "bytes": path.stat().st_size, "reused": True}
    t0 = time.perf_counter()
    result = export_onnx(spec.name, img_size=spec.size, overrides=dict(spec.overrides), batch=batch or 1,
                         dynamic_batch=batch is None, optimize=False, output=path)
    ctx.exports[spec.label] = path
    return "; ".join(result.parity), {"bytes": result.bytes, "export_s": time.perf_counter() - t0, "reused": False}


def passes(ctx: Context, spec: ModelSpec) -> Outcome:
    missing = module_missing("onnx_graphsurgeon")
    if missing:
        raise NotAvailable(missing)
    ctx.require_device()
    from acmix_deploy.onnxio import load_model, save_model
    from acmix_deploy.parity import FP32_TOL
    from acmix_deploy.passes.pipeline import optimize_model

    src = ctx.need(ctx.exports, spec.label, "the ONNX export")
    optimized, report = optimize_model(load_model(src), latency_runs=0)
    path = src.with_suffix(".opt.onnx")
    save_model(optimized, path)
    out, _ = _ort_run(path, "CPUExecutionProvider", ctx.model(spec).images)
    line, numbers = parity_outcome(ctx.model(spec).ref_out, out, FP32_TOL, "optimized ONNX (CPU) vs reference")
    ctx.optimized[spec.label] = path
    return line, {**numbers, "nodes_before": report.nodes_before, "nodes_after": report.nodes_after}


def provider_missing(provider: str) -> str | None:
    """None when this onnxruntime build has `provider`, else the reason."""
    missing = module_missing("onnxruntime")
    if missing:
        return missing
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider not in available:
        return f"this onnxruntime build has no {provider} (it has {', '.join(available)})"
    return None


def _ort_run(path: Path, provider: str, images: np.ndarray) -> tuple[np.ndarray, float]:
    """(first output, ms of a second run) of an ONNX Runtime session on `provider` only."""
    from acmix_deploy.runners import BackendUnavailable, OnnxRuntimeRunner
    from acmix_deploy.runners.ort import PROVIDERS as BY_BACKEND

    missing = provider_missing(provider)
    if missing:
        raise NotAvailable(missing)
    backend = next(b for b, p in BY_BACKEND.items() if p == provider)
    try:
        runner = OnnxRuntimeRunner(path, backend).activate()
    except BackendUnavailable as exc:  # the provider failed to initialise: ORT fell back to the CPU
        raise NotAvailable(str(exc)) from None
    runner.infer(images)
    t0 = time.perf_counter()
    out = next(iter(runner.infer(images).values()))
    ms = (time.perf_counter() - t0) * 1e3
    runner.deactivate()
    return np.asarray(out, np.float32), ms


def onnxruntime(ctx: Context, spec: ModelSpec, backend: str, precision: str) -> Outcome:
    missing = provider_missing(PROVIDERS[backend])
    if missing:
        raise NotAvailable(missing)
    ctx.require_device()
    if precision == "fp32":
        path = ctx.need(ctx.exports, spec.label, "the ONNX export")
    else:
        path = ctx.need(ctx.fp16, spec.label, "the fp16 ONNX")
    built = ctx.model(spec)
    out, ms = _ort_run(path, PROVIDERS[backend], built.images)
    line, numbers = precision_outcome(built.ref_out, out, precision, f"{backend} {precision} vs reference ({ctx.device})")
    return line, {**numbers, "ms": ms}


def fp16(ctx: Context, spec: ModelSpec) -> Outcome:
    """convert-fp16 of the export (its own gate: cosine >= 0.999 against the fp32 ONNX)."""
    missing = module_missing("onnxconverter_common")
    if missing:
        raise NotAvailable(missing)
    from acmix_deploy.precision.fp16 import convert_fp16

    src = ctx.need(ctx.exports, spec.label, "the ONNX export")
    n = 4 if ctx.device == "cpu" else 8
    result = convert_fp16(src, output=src.with_suffix(".fp16.onnx"), samples=n, holdout=n, model=spec.name,
                          record=False)
    ctx.fp16[spec.label] = result.path
    report = result.report
    return report.line(), {"cosine": report.cosine, "max_abs": report.max_abs,
                           "blocked_nodes": result.blocked_nodes, "total_nodes": result.total_nodes}


def onnx_steps(ctx: Context, spec: ModelSpec) -> list[Step]:
    dev, label = ctx.device, spec.label
    steps = [
        Step("onnx-export", "fp32", label, lambda: export(ctx, spec), "cpu", min_s=15),
        Step("onnx-passes", "fp32", label, lambda: passes(ctx, spec), "cpu", min_s=10),
    ]
    for backend in PROVIDERS:
        steps.append(Step(backend, "fp32", label, lambda b=backend: onnxruntime(ctx, spec, b, "fp32"),
                          "cpu" if backend == "onnxruntime-cpu" else dev, min_s=3))
    steps.append(Step("onnx-fp16", "fp16", label, lambda: fp16(ctx, spec), "cpu", min_s=10))
    for backend in PROVIDERS:
        steps.append(Step(backend, "fp16", label, lambda b=backend: onnxruntime(ctx, spec, b, "fp16"),
                          "cpu" if backend == "onnxruntime-cpu" else dev, min_s=3))
    return steps
