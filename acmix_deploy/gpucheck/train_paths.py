"""Training steps: forward + backward + optimizer step of the training recipe's pieces (SGD with the
recipe's parameter groups, label-smoothed cross entropy) on seeded random images.

On CUDA the steps run under AMP exactly as `train --amp` chooses it (bfloat16 where the GPU has it,
else float16 with a GradScaler); on the CPU they run in float32 (train's --amp is CUDA-only).
The reference form is the registered model; a fast training form is checked when this version has
one (see `fast_form`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time

import numpy as np

from acmix_deploy.gpucheck.context import Context
from acmix_deploy.gpucheck.core import CheckFailed, NotAvailable, Outcome, Step
from acmix_deploy.gpucheck.plan import ModelSpec


def fast_form() -> str | None:
    """The name of train's fast form when this version has one (`train --form`, converted by
    acmix_deploy.nn.acmix_train.to_form), else None."""
    from acmix_deploy.train.config import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if "form" not in fields or importlib.util.find_spec("acmix_deploy.nn.acmix_train") is None:
        return None
    default = fields["form"].default
    return str(default) if default != "reference" else "fast"


def _amp_dtype(device: str):
    import torch

    if device != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _model(spec: ModelSpec, form: str):
    """The registered model in `form`, as `train` builds it (same seed for both forms)."""
    import torch

    from acmix_deploy.registry import create_model

    torch.manual_seed(0)
    model = create_model(spec.name, **spec.build_kwargs())
    if form != "reference":
        from acmix_deploy.nn.acmix_train import to_form

        to_form(model, form)
    return model


def _step_timer(device: str):
    """start() / stop() -> ms for one step: CUDA events on a GPU, perf_counter on the CPU."""
    import torch

    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def stop() -> float:
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))

        return start.record, stop
    t0 = [0.0]

    def begin() -> None:
        t0[0] = time.perf_counter()

    return begin, lambda: (time.perf_counter() - t0[0]) * 1e3


def train_steps_check(ctx: Context, spec: ModelSpec, form: str) -> Outcome:
    ctx.require_device()
    import torch

    from acmix_deploy.train.schedule import make_optimizer

    model = _model(spec, form).train().to(ctx.device)
    amp = _amp_dtype(ctx.device)
    optimizer = make_optimizer(model, "sgd", 0.01, 5e-5)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    gen = torch.Generator().manual_seed(0)
    n, b = ctx.plan.train_steps, ctx.plan.train_batch
    x = torch.randn(b, 3, spec.size, spec.size, generator=gen).to(ctx.device)
    classes = int(spec.overrides.get("num_classes") or model.card.num_classes)
    y = torch.randint(0, classes, (b,), generator=gen).to(ctx.device)
    if ctx.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    begin, stop = _step_timer(ctx.device)
    losses, times = [], []
    for _ in range(n):
        begin()
        with torch.autocast(ctx.device, dtype=amp or torch.float32, enabled=amp is not None):
            loss = criterion(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        times.append(stop())
        losses.append(float(loss.item()))
    numbers = {
        "form": form, "amp": str(amp).removeprefix("torch.") if amp else None, "batch": b, "steps": n,
        "losses": losses, "ms_per_step": float(np.median(times[1:] if n > 1 else times)), "first_step_ms": times[0],
        "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if ctx.device == "cuda" else None,
    }
    if not np.isfinite(losses).all():
        raise CheckFailed(f"the loss became {losses} ({numbers['amp'] or 'fp32'})", numbers)
    what = f"AMP {numbers['amp']}" if amp else "float32 (CPU)"
    return (f"{n} {form}-form steps, {what}, batch {b}: {numbers['ms_per_step']:.1f} ms/step after the first, "
            f"loss {losses[0]:.4f} -> {losses[-1]:.4f}"), numbers


def fast_check(ctx: Context, spec: ModelSpec) -> Outcome:
    form = fast_form()
    if form is None:
        raise NotAvailable("no fast training form in this version (train has no --form)")
    return train_steps_check(ctx, spec, form)


def train_steps(ctx: Context) -> list[Step]:
    spec = ctx.plan.train_model
    precision = "amp" if ctx.device == "cuda" else "fp32"
    return [
        Step("train-steps", precision, f"{spec.label}, reference form", lambda: train_steps_check(ctx, spec, "reference"),
             ctx.device, min_s=10),
        Step("train-steps", precision, f"{spec.label}, fast form", lambda: fast_check(ctx, spec), ctx.device, min_s=10),
    ]
