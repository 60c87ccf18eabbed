"""State shared by the steps of one run: the device, the deadline, built models and artifacts.

Models are built once per spec exactly as `export` builds them (seeded, BatchNorm settled), and
the fp32 reference output on the checked device is computed once with TF32 off: every parity row
compares against that output under the tolerance rule.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from acmix_deploy.gpucheck.core import NotAvailable
from acmix_deploy.gpucheck.plan import ModelSpec, Plan

# Test hook, documented for `doctor --gpu-check`: ACMIX_GPUCHECK_INJECT=torch-deploy makes the
# torch-deploy fp32 row perturb its candidate output (one logit moved by 1 % of max |reference|,
# far outside the fp32 tolerance), so the report must show a `failed` row and exit non-zero.
INJECT_ENV = "ACMIX_GPUCHECK_INJECT"


def injected(path: str) -> bool:
    return path in os.environ.get(INJECT_ENV, "").split(",")


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """TF32 off for parity: cuDNN convolutions use TF32 by default, about 1e-3 relative error."""
    import torch

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@dataclass
class Built:
    """A spec's reference model and deploy form on the device, its inputs and reference output."""

    reference: Any
    deploy: Any
    images: np.ndarray
    ref_out: np.ndarray  # fp32 reference on the device (TF32 off)
    ref_cpu_out: np.ndarray  # fp32 reference on the CPU (the same as ref_out in the dry mode)
    ref_ms: float


@dataclass
class Context:
    plan: Plan
    device: str
    workdir: Path
    deadline: float
    cuda_reason: str | None = None  # why CUDA cannot be used (None: it can, or device is cpu)
    built: dict[str, Built] = field(default_factory=dict)
    deploy_only: dict[str, Any] = field(default_factory=dict)
    exports: dict[str, Path] = field(default_factory=dict)
    optimized: dict[str, Path] = field(default_factory=dict)
    fp16: dict[str, Path] = field(default_factory=dict)
    engines: dict[tuple[str, str], Path] = field(default_factory=dict)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def require_device(self) -> None:
        if self.cuda_reason:
            raise NotAvailable(self.cuda_reason)

    def model(self, spec: ModelSpec) -> Built:
        if spec.label not in self.built:
            self.built[spec.label] = build_models(spec, self.device, self.plan.parity_batch)
        return self.built[spec.label]

    def deploy_form(self, spec: ModelSpec) -> Any:
        """The deploy form on the device, without the reference run (timing needs no reference)."""
        if spec.label in self.built:
            return self.built[spec.label].deploy
        if spec.label not in self.deploy_only:
            from acmix_deploy.export import reference_and_deploy

            _, deploy, _ = reference_and_deploy(spec.name, build=spec.build_kwargs())
            self.deploy_only[spec.label] = deploy.eval().to(self.device)
        return self.deploy_only[spec.label]

    def need(self, store: dict, key: Any, what: str) -> Any:
        """An artifact an earlier row made; NotAvailable naming that row when it did not."""
        if key not in store:
            raise NotAvailable(f"needs {what}, which did not pass above")
        return store[key]


def cuda_problem() -> str | None:
    """None when torch can use a CUDA device, else the reason."""
    try:
        import torch
    except ImportError:
        return "no CUDA device: PyTorch is not installed"
    try:
        if torch.cuda.is_available():
            return None
    except Exception as exc:  # a broken CUDA install
        from acmix_deploy.errors import first_line

        return f"no CUDA device: {first_line(exc)}"
    return f"no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'})"


def forward(model: Any, images: np.ndarray, device: str, dtype: Any = None) -> tuple[np.ndarray, float]:
    """(fp32 numpy output, milliseconds) of one no-grad forward; `dtype` runs under autocast."""
    import torch

    x = torch.from_numpy(images).to(device)
    with torch.inference_mode(), torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model(x)
        if device == "cuda":
            torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 1e3
    return out.float().cpu().numpy(), ms


def build_models(spec: ModelSpec, device: str, batch: int) -> Built:
    """Reference + deploy form as export builds them, moved to `device`; reference outputs computed."""
    import torch

    from acmix_deploy.export import reference_and_deploy, verification_images

    reference, deploy, _ = reference_and_deploy(spec.name, build=spec.build_kwargs())
    reference.eval()
    deploy.eval()
    images = verification_images(reference.card, spec.size, batch, seed=3)
    ref_cpu, ms = forward(reference, images, "cpu")
    if device == "cuda":
        reference, deploy = reference.to(device), deploy.to(device)
        with strict_fp32():
            forward(reference, images, device)  # first call: cuDNN setup, not timed
            ref_dev, ms = forward(reference, images, device)
    else:
        ref_dev = ref_cpu
    torch.manual_seed(0)
    return Built(reference, deploy, images, ref_dev, ref_cpu, ms)
