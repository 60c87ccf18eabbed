"""Timing: each ACmix model's deploy form against its plain baseline, interleaved round by round
(acmix_deploy.runners.timing), CUDA events on a GPU and perf_counter on the CPU.

The ratio is the median of the per-round ratios; its quartiles show how much the machine moved.
TF32 is left at torch's defaults here (recorded in the row): timings are of what users run.
"""

from __future__ import annotations

import numpy as np

from acmix_deploy.gpucheck.context import Context
from acmix_deploy.gpucheck.core import CheckFailed, Outcome, Step
from acmix_deploy.gpucheck.plan import ModelSpec


def _callable(model, x):
    import torch

    def call():
        with torch.inference_mode():
            return model(x)

    return call


def time_pair(ctx: Context, model: ModelSpec, baseline: ModelSpec, batch: int) -> Outcome:
    ctx.require_device()
    import torch

    from acmix_deploy.runners.timing import Budget, Timed, time_interleaved
    from acmix_deploy.runners import make_images

    cuda = ctx.device == "cuda"
    x = torch.from_numpy(make_images(batch, (model.size, model.size))).to(ctx.device)
    items = [
        Timed(_callable(ctx.deploy_form(spec), x), cuda=cuda,
              sync=torch.cuda.synchronize if cuda else None)
        for spec in (model, baseline)
    ]
    warmup = Budget(seconds=ctx.plan.timing_warmup_s, min_iterations=1)
    measure = Budget(seconds=ctx.plan.timing_measure_s, min_iterations=ctx.plan.timing_min_rounds)
    a, b = time_interleaved(items, warmup, measure)
    ratios = a / b
    numbers = {
        "batch": batch, "timer": "cuda-events" if cuda else "perf_counter", "rounds": int(len(a)),
        "model_ms": float(np.median(a)), "baseline_ms": float(np.median(b)), "ratio": float(np.median(ratios)),
        "ratio_q1": float(np.quantile(ratios, 0.25)), "ratio_q3": float(np.quantile(ratios, 0.75)),
        "tf32_conv": bool(torch.backends.cudnn.allow_tf32) if cuda else None,
    }
    if not (np.isfinite(a).all() and np.isfinite(b).all()) or min(a.min(), b.min()) <= 0:
        raise CheckFailed("a timing sample is not a positive number", numbers)
    return (f"deploy forms, {numbers['timer']}, {numbers['rounds']} interleaved rounds: {model.name} "
            f"{numbers['model_ms']:.3f} ms, {baseline.name} {numbers['baseline_ms']:.3f} ms, ratio "
            f"{numbers['ratio']:.2f} (quartiles {numbers['ratio_q1']:.2f}-{numbers['ratio_q3']:.2f})"), numbers


def timing_steps(ctx: Context) -> list[Step]:
    steps = []
    for model, baseline in ctx.plan.timing_pairs:
        for batch in ctx.plan.timing_batches:
            subject = f"{model.label} vs {baseline.name}, batch {batch}"
            steps.append(Step("timing", "fp32", subject, lambda m=model, b=baseline, n=batch: time_pair(ctx, m, b, n),
                              ctx.device, min_s=8))
    return steps
