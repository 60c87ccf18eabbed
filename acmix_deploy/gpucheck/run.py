"""Run every gpu-check step in order under the time budget, writing the report after each row.

Order: the first model's torch / ONNX / TensorRT rows, timing, training steps, then the other
models' parity rows and torch.compile last (its first compile may take minutes). A step that
would start with less budget left than it needs is reported as skipped ("not available").
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from acmix_deploy.gpucheck.context import Context, cuda_problem
from acmix_deploy.gpucheck.core import CheckFailed, NotAvailable, Step
from acmix_deploy.gpucheck.plan import make_plan
from acmix_deploy.gpucheck.report import FAILED, NOT_AVAILABLE, OK, Report, Row


PATHS = (
    "torch-eager", "torch-deploy", "onnx-export", "onnx-passes", "onnxruntime-cpu", "onnxruntime-cuda",
    "onnxruntime-trt", "onnx-fp16", "tensorrt-build", "tensorrt-run", "tensorrt-refusal", "timing", "train-steps",
    "torch-compile",
)


def selected(only: list[str] | None, path: str) -> bool:
    """`only` holds path names or their prefixes ("onnx" selects every onnx-* path); None selects all."""
    return not only or any(path.startswith(prefix) for prefix in only)


@dataclass
class CheckOptions:
    out_dir: Path
    device: str = "cuda"
    quick: bool = False
    budget_s: float | None = None  # default: plan.BUDGET_S
    workdir: Path | None = None  # keep exports here and reuse them in later runs (tests); default: a temp dir
    only: list[str] | None = None  # run these paths (names or prefixes); the others are "skipped" rows

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def all_steps(ctx: Context) -> list[Step]:
    from acmix_deploy.gpucheck.onnx_paths import onnx_steps
    from acmix_deploy.gpucheck.timing_paths import timing_steps
    from acmix_deploy.gpucheck.torch_paths import compile_steps, torch_steps
    from acmix_deploy.gpucheck.train_paths import train_steps
    from acmix_deploy.gpucheck.trt_paths import trt_steps

    first, *others = ctx.plan.parity_models
    steps = torch_steps(ctx, first) + onnx_steps(ctx, first) + trt_steps(ctx, first)
    steps += timing_steps(ctx) + train_steps(ctx)
    for spec in others:
        steps += torch_steps(ctx, spec) + onnx_steps(ctx, spec) + trt_steps(ctx, spec)
    return steps + compile_steps(ctx)


def execute(ctx: Context, step: Step, only: list[str] | None = None) -> Row:
    """One step -> one row; never raises (but lets KeyboardInterrupt through)."""
    from acmix_deploy.errors import first_line

    t0 = time.monotonic()
    numbers: dict[str, Any] = {}
    left = ctx.remaining()
    if not selected(only, step.path):
        status, reason = NOT_AVAILABLE, f"skipped: not selected by --only {','.join(only or [])}"
    elif ctx.cuda_reason:
        status, reason = NOT_AVAILABLE, ctx.cuda_reason
    elif left < step.min_s:
        status = NOT_AVAILABLE
        reason = f"skipped: {max(left, 0):.0f} s of the {ctx.plan.budget_s:.0f} s budget left, this path needs ~{step.min_s:.0f} s"
    else:
        try:
            reason, numbers = step.fn()
            status = OK
        except NotAvailable as exc:
            status, reason = NOT_AVAILABLE, str(exc)
        except CheckFailed as exc:
            status, reason, numbers = FAILED, str(exc), exc.numbers
        except Exception as exc:  # any error of the path under test is its failure, in one line
            status, reason = FAILED, f"{type(exc).__name__}: {first_line(exc)}"
    return Row(step.path, step.precision, step.subject, step.device, status, reason, numbers,
               round(time.monotonic() - t0, 3))


def run_gpu_check(
    options: CheckOptions,
    on_row: Callable[[Row, Report], None] | None = None,
) -> Report:
    """Run the check; the report files exist from the start and are complete when this returns."""
    from acmix_deploy.gpucheck.machine import machine_block

    unknown = [p for p in options.only or [] if not any(path.startswith(p) for path in PATHS)]
    if unknown:
        from acmix_deploy.errors import AcmixError

        raise AcmixError(f"--only {', '.join(unknown)} names no path; paths: {', '.join(PATHS)}")
    plan = make_plan(options.device, options.quick, options.budget_s)
    opts = {**options.to_dict(), "budget_s": plan.budget_s}
    report = Report(Path(options.out_dir), opts, machine_block())
    report.write()
    with tempfile.TemporaryDirectory(prefix="acmix-gpucheck-") as tmp:
        workdir = Path(options.workdir) if options.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        ctx = Context(plan, options.device, workdir, time.monotonic() + plan.budget_s,
                      cuda_reason=cuda_problem() if options.device == "cuda" else None)
        for step in all_steps(ctx):
            row = execute(ctx, step, options.only)
            report.add(row)
            if on_row is not None:
                on_row(row, report)
    report.complete = True
    report.write()
    return report
