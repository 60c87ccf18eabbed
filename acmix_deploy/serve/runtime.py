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


def open_runner(artifact: str, backend: str, input_size: int, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function (N, 3, S, S) array -> (N, classes) array over the runner `backend` for `artifact`.

    One call per Triton model instance: each instance gets its own runner, which is what a runner
    that is not thread-safe (a TensorRT execution context) needs."""
    from acmix_deploy.runners import OnnxRuntimeRunner, Runner, RunnerOptions, TensorRTRunner, TorchRunner, make_images

    path = Path(artifact)
    device = "cuda" if backend in ("onnxruntime-cuda", "tensorrt") else "cpu"
    options = RunnerOptions(input_size=(input_size, input_size), threads=threads, device=device)
    runner: Runner
    if backend == "tensorrt":
        runner = TensorRTRunner(path, backend, options)
    elif backend.startswith("onnxruntime"):
        runner = OnnxRuntimeRunner(path, backend, options)
    else:
        runner = TorchRunner(functools.partial(_checkpoint_model, str(path)), backend, options)
    runner.activate()

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(next(iter(runner.infer(np.ascontiguousarray(x)).values())))

    run(make_images(1, options.input_size))  # a runner that cannot run the artifact fails here, at load
    return run
