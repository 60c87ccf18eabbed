"""TensorRT engine runner: acmix_deploy.runners.trt_engine.EngineRunner behind the runner interface.

Not thread-safe: a TensorRT execution context holds the bound tensor addresses of one inference,
so one instance serializes `infer` calls; make one runner per thread (Triton: per model instance).
The engine is read from a path (its sidecar sits beside it); TensorRT is imported on activate.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from acmix_deploy.errors import AcmixError
from acmix_deploy.runners import base
from acmix_deploy.runners.base import BackendUnavailable, Runner, RunnerOptions, TensorMeta, make_images


def _engine_runner_class() -> Any:
    """EngineRunner, imported when needed (it imports TensorRT only when an engine is opened)."""
    from acmix_deploy.runners.trt_engine import EngineRunner

    return EngineRunner


class TensorRTRunner(Runner):
    """A serialized engine. Outputs of `infer` are host arrays; `runner(inputs)` (benchmarks)
    enqueues on torch's current CUDA stream without synchronizing, so CUDA events time it exactly."""

    thread_safe = False

    def __init__(self, engine: str | os.PathLike[str], backend: str = "tensorrt",
                 options: RunnerOptions | None = None, require_gpu_first: bool = True) -> None:
        super().__init__()
        self.name = backend
        self.device = "cuda"
        self.path = Path(engine)
        self.options = options or RunnerOptions()
        self._gpu_first = require_gpu_first
        self.engine: Any = None
        self.context: Any = None

    def _activate(self) -> None:
        if self._gpu_first and not base.cuda_available():  # without a GPU no engine file would help
            raise BackendUnavailable("TensorRT needs a CUDA GPU; none found")
        try:  # sidecar and sha256 checks first, then TensorRT and the GPU
            self.engine = _engine_runner_class()(str(self.path))
        except AcmixError as exc:  # wrong TensorRT flavour/version, GPU, missing sidecar ...
            raise BackendUnavailable(str(exc)) from None
        import torch

        self._torch = torch
        self._input_name = self.engine.input_names[0]
        self.context = self.engine.context  # for the per-layer profiler
        self.trt = self.engine.trt
        self.sidecar = self.engine.sidecar
        self.warnings = list(self.engine.warnings)  # built on another GPU / TensorRT version

    def _deactivate(self) -> None:
        self.engine = None
        self.context = None

    def input_metadata(self) -> dict[str, TensorMeta]:
        return {t.name: TensorMeta(tuple(d if d >= 0 else None for d in t.shape), np.dtype(t.dtype))
                for t in self.sidecar.inputs}

    def batch_limits(self) -> tuple[int, int | None]:
        lo, _, hi = self.sidecar.batch_range
        return max(1, lo), (hi if hi > 0 else None)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.engine.infer({k: np.ascontiguousarray(v) for k, v in feed.items()})
        return {k: (v.float() if v.is_floating_point() else v).cpu().numpy() for k, v in out.items()}

    # -- benchmark hooks ----------------------------------------------------------------------------
    def prepare(self, batch: int) -> Any:
        x = self._torch.from_numpy(make_images(batch, self.options.input_size, self.options.seed))
        if not self.options.include_transfers:
            x = x.cuda()
        self(x)
        self.synchronize()
        return x

    def __call__(self, inputs: Any) -> Any:
        out = self.engine.infer({self._input_name: inputs}, sync=False)
        if self.options.include_transfers:
            return {k: v.cpu() for k, v in out.items()}  # .cpu() waits for the engine
        return out

    def synchronize(self) -> None:
        self._torch.cuda.synchronize()
