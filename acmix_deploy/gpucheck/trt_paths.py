"""TensorRT paths: engine build (fp32 / fp16 ONNX), engine run and parity, and the engine runner's
refusal of an engine this TensorRT or GPU cannot run.

Builds use `tensorrt` where installed, else `tensorrt_rtx` (which also builds ahead of time on a
machine without a GPU, so the dry mode checks the build and the GPU-free part of the refusal).
"""

from __future__ import annotations

import json
import shutil

from acmix_deploy.gpucheck.context import Context
from acmix_deploy.gpucheck.core import CheckFailed, NotAvailable, Outcome, Step, precision_outcome
from acmix_deploy.gpucheck.plan import ModelSpec


def _trt_or_unavailable():
    from acmix_deploy.errors import AcmixError, first_line
    from acmix_deploy.runners.trt_import import load_trt

    try:
        return load_trt("auto")
    except AcmixError as exc:
        raise NotAvailable(first_line(exc)) from None


def build(ctx: Context, spec: ModelSpec, precision: str) -> Outcome:
    _, flavour, version = _trt_or_unavailable()
    from acmix_deploy.runners.trt_import import TENSORRT_RTX
    from acmix_deploy.trt.build import build_engine

    if precision == "fp32":
        src = ctx.optimized.get(spec.label) or ctx.need(ctx.exports, spec.label, "the ONNX export")
    else:
        src = ctx.need(ctx.fp16, spec.label, "the fp16 ONNX")
    batch = ctx.plan.parity_batch
    caps = ["current"] if (flavour == TENSORRT_RTX and ctx.device == "cuda" and not ctx.cuda_reason) else None
    result = build_engine(src, output=ctx.workdir / f"{src.stem}.{precision}.engine", min_batch=1, opt_batch=batch,
                          max_batch=batch, runtime=flavour, compute_capabilities=caps, progress=False, record=False)
    ctx.engines[(spec.label, precision)] = result.path
    return f"{flavour} {version} built {result.path.name} from {src.name}", {
        "build_s": result.build_seconds, "bytes": result.path.stat().st_size, "flavour": flavour,
        "version": version, "source": src.name}


def run(ctx: Context, spec: ModelSpec, precision: str) -> Outcome:
    _trt_or_unavailable()
    if ctx.device == "cpu" or ctx.cuda_reason:
        raise NotAvailable(ctx.cuda_reason or "running an engine needs a CUDA GPU (dry mode: the build is checked)")
    import torch

    from acmix_deploy.runners.trt_engine import EngineRunner

    path = ctx.need(ctx.engines, (spec.label, precision), f"the {precision} engine")
    built = ctx.model(spec)
    runner = EngineRunner(path)
    x = torch.from_numpy(built.images).cuda()
    runner(x)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    out = runner(x, sync=False)
    end.record()
    end.synchronize()
    line, numbers = precision_outcome(built.ref_out, out.float().cpu().numpy(), precision,
                                      f"engine {precision} vs reference")
    return line, {**numbers, "ms": float(start.elapsed_time(end)), "warnings": list(runner.warnings)}


def _refused(engine, sidecar_edit: dict, workdir, tag: str) -> str:
    """Copy the engine with an edited sidecar and return the runner's one-line refusal (or fail)."""
    from acmix_deploy.errors import AcmixError
    from acmix_deploy.runners.trt_engine import EngineRunner
    from acmix_deploy.runners.sidecar import sidecar_path

    copy = workdir / f"refusal_{tag}.engine"
    shutil.copyfile(engine, copy)
    side = json.loads(sidecar_path(engine).read_text())
    side.update(sidecar_edit)
    sidecar_path(copy).write_text(json.dumps(side))
    try:
        EngineRunner(copy)
    except AcmixError as exc:
        return str(exc)
    raise CheckFailed(f"the engine runner accepted an engine with {sidecar_edit}")


def refusal(ctx: Context, spec: ModelSpec) -> Outcome:
    """A TensorRT version mismatch is refused before the GPU is touched; with a GPU also a compute
    capability the engine was not built for."""
    _trt_or_unavailable()
    engine = ctx.need(ctx.engines, (spec.label, "fp32"), "the fp32 engine")
    side = json.loads((engine.parent / f"{engine.name}.json").read_text())
    messages = {"version": _refused(engine, {"trt_version": side["trt_version"] + ".gpucheck"}, ctx.workdir, "version")}
    if "cannot run on" not in messages["version"]:
        raise CheckFailed(f"refused for another reason than the version: {messages['version']}", messages)
    if ctx.device == "cuda" and not ctx.cuda_reason:
        from acmix_deploy.runners.gpu import gpu_info

        here = gpu_info()
        other = "8.6" if here is not None and here.cc == "7.5" else "7.5"  # any capability but this GPU's
        edit = ({"target_compute_capabilities": [other]} if side.get("target_compute_capabilities")
                else {"gpu_compute_capability": other, "gpu_name": "another GPU"})
        messages["capability"] = _refused(engine, edit, ctx.workdir, "capability")
        if "compute capability" not in messages["capability"]:
            raise CheckFailed(f"refused for another reason than the GPU: {messages['capability']}", messages)
        return "refused a TensorRT version and a compute capability mismatch, one line each", messages
    return "refused a TensorRT version mismatch in one line (the GPU check needs a GPU)", messages


def trt_steps(ctx: Context, spec: ModelSpec) -> list[Step]:
    label, dev = spec.label, ctx.device
    return [
        Step("tensorrt-build", "fp32", label, lambda: build(ctx, spec, "fp32"), dev, min_s=20),
        Step("tensorrt-run", "fp32", label, lambda: run(ctx, spec, "fp32"), dev, min_s=5),
        Step("tensorrt-build", "fp16", label, lambda: build(ctx, spec, "fp16"), dev, min_s=20),
        Step("tensorrt-run", "fp16", label, lambda: run(ctx, spec, "fp16"), dev, min_s=5),
        Step("tensorrt-refusal", "fp32", label, lambda: refusal(ctx, spec), dev, min_s=3),
    ]
