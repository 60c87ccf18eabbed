"""PyTorch paths: the reference (eager) on the device, the deploy form in fp32 and fp16, torch.compile.

On CUDA the reference is compared with the same model on the CPU (TF32 off), the deploy form with
the reference on the device; fp16 runs under autocast (softmax, norms and reductions stay fp32, as
the fp16 ONNX keeps them) against the fp32 reference with the fp16 tolerance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from acmix_deploy.gpucheck.context import Context, forward, injected, strict_fp32
from acmix_deploy.gpucheck.core import CheckFailed, NotAvailable, Outcome, Step, parity_outcome, precision_outcome
from acmix_deploy.gpucheck.plan import ModelSpec


def eager(ctx: Context, spec: ModelSpec) -> Outcome:
    ctx.require_device()
    from acmix_deploy.parity import FP32_TOL

    built = ctx.model(spec)
    numbers = {"ms": built.ref_ms, "batch": len(built.images), "ref_scale": float(np.abs(built.ref_out).max())}
    if not np.isfinite(built.ref_out).all():
        raise CheckFailed("the reference output is not finite", numbers)
    if ctx.device == "cpu":
        return "reference forward ran on the CPU (dry mode: the CUDA row compares it with the CPU run)", numbers
    line, parity = parity_outcome(built.ref_cpu_out, built.ref_out, FP32_TOL, "CUDA vs CPU reference")
    return line, {**numbers, **parity}


def deploy(ctx: Context, spec: ModelSpec, precision: str) -> Outcome:
    ctx.require_device()
    import torch

    built = ctx.model(spec)
    if precision == "fp32":
        with strict_fp32():
            out, ms = forward(built.deploy, built.images, ctx.device)
        if injected("torch-deploy"):
            out = out.copy()
            out.flat[0] += 0.01 * float(np.abs(built.ref_out).max())
    else:
        out, ms = forward(built.deploy, built.images, ctx.device, torch.float16)
    line, numbers = precision_outcome(built.ref_out, out, precision, f"deploy form {precision} vs reference")
    return line, {**numbers, "ms": ms}


def compiler_missing(backend: str) -> str | None:
    """inductor needs a C compiler (on CUDA, Triton builds its launcher with one); aot_eager does not."""
    import shutil

    if backend != "inductor" or os.environ.get("CC") or any(shutil.which(c) for c in ("cc", "gcc", "clang")):
        return None
    return "torch.compile (inductor) needs a C compiler and none is on PATH (cc, gcc, clang; or set CC)"


def compile_check(ctx: Context, spec: ModelSpec) -> Outcome:
    """torch.compile of the deploy form in a child process, killed when the budget runs out."""
    ctx.require_device()
    missing = compiler_missing(ctx.plan.compile_backend)
    if missing:
        raise NotAvailable(missing)
    timeout = max(5.0, ctx.remaining() - 3.0)
    args = {"name": spec.name, "build": spec.build_kwargs(), "device": ctx.device,
            "backend": ctx.plan.compile_backend, "batch": ctx.plan.parity_batch}
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    try:
        proc = subprocess.run([sys.executable, "-m", "acmix_deploy.gpucheck.compile_child", json.dumps(args)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise NotAvailable(f"skipped: torch.compile did not finish within the {timeout:.0f} s left of the budget") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CheckFailed(f"torch.compile ({ctx.plan.compile_backend}) failed: {tail}")
    result = json.loads(lines[-1])
    numbers = result["numbers"]
    if not result["passed"]:
        raise CheckFailed(result["line"], numbers)
    return f"{ctx.plan.compile_backend}: {result['line']}", numbers


def torch_steps(ctx: Context, spec: ModelSpec) -> list[Step]:
    dev = ctx.device
    return [
        Step("torch-eager", "fp32", spec.label, lambda: eager(ctx, spec), dev, min_s=10),
        Step("torch-deploy", "fp32", spec.label, lambda: deploy(ctx, spec, "fp32"), dev, min_s=5),
        Step("torch-deploy", "fp16", spec.label, lambda: deploy(ctx, spec, "fp16"), dev, min_s=5),
    ]


def compile_steps(ctx: Context) -> list[Step]:
    spec = ctx.plan.compile_model
    if spec is None:
        def skipped() -> Outcome:
            raise NotAvailable("skipped: --quick leaves out torch.compile (its first compile can take minutes)")

        return [Step("torch-compile", "fp32", ctx.plan.train_model.label, skipped, ctx.device)]
    return [Step("torch-compile", "fp32", spec.label, lambda: compile_check(ctx, spec), ctx.device, min_s=20)]
