"""The toolkit's runners inside a Triton python-backend model (used by `acmix-deploy serve ARTIFACT`).

The served model.py (templates/runner_model.py) calls `open_runner` once per model instance and then
`run` per dynamic batch, so the server executes the artifact exactly as bench and eval do:
ONNX Runtime (CPU or CUDA), a TensorRT engine, or the PyTorch deploy form of a checkpoint.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SERVE_BACKENDS = {"onnxruntime", "onnxruntime-cuda", "tensorrt", "torch-deploy"}


def _checkpoint_model(path: str) -> Any:
    from acmix_deploy.registry import create_model

    return create_model(None, checkpoint=path)


def _to_numpy(out: Any) -> np.ndarray:
    """First output of any runner as a host numpy array."""
    if isinstance(out, dict):
        out = next(iter(out.values()))
    if isinstance(out, (list, tuple)):
        out = out[0]
    if hasattr(out, "detach"):
        out = out.detach().float().cpu().numpy() if out.dtype.is_floating_point else out.detach().cpu().numpy()
    return np.asarray(out)


def open_runner(artifact: str, backend: str, input_size: int, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function (N, 3, S, S) array -> (N, classes) array over the runner `backend` for `artifact`."""
    from acmix_deploy.bench.sources import ModelSource
    from acmix_deploy.runners import RunnerOptions, create_runner

    path = Path(artifact)
    source = ModelSource(label=path.name, input_size=(input_size, input_size))
    if backend == "tensorrt":
        source.engine_path = path
    elif backend.startswith("onnxruntime"):
        source.onnx_path = path
    else:
        source.torch_factory = functools.partial(_checkpoint_model, str(path))
    device = "cuda" if backend in ("onnxruntime-cuda", "tensorrt") else "cpu"
    options = RunnerOptions(input_size=(input_size, input_size), threads=threads, device=device, include_transfers=True)
    runner = create_runner(backend, source, options)
    runner.prepare(1)
    torch_input = backend in ("tensorrt", "torch-deploy")

    def run(x: np.ndarray) -> np.ndarray:
        if torch_input:
            import torch

            x = torch.from_numpy(np.ascontiguousarray(x))
        return _to_numpy(runner(x))

    return run
