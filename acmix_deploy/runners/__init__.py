"""The one runner interface: torch (eager / deploy / compile), ONNX Runtime (CPU / CUDA / TensorRT EP)
and TensorRT engines, used by export verification, the graph-pass gate, the precision checks, eval,
bench, profile and serve alike. See runners.base for the interface and which runners are
thread-safe; nothing here imports torch, onnxruntime or tensorrt until a runner is activated.

    with OnnxRuntimeRunner(path_or_bytes) as runner:
        logits = runner.infer({"images": x})["logits"]
"""

from __future__ import annotations

from pathlib import Path

from acmix_deploy.runners.base import (
    ALIASES,
    BACKENDS,
    ORT_BACKENDS,
    TORCH_BACKENDS,
    BackendUnavailable,
    ModelSourceLike,
    Runner,
    RunnerOptions,
    TensorMeta,
    canonical_backend,
    cuda_available,
    make_images,
    padded_chunks,
    run_chunked,
)
from acmix_deploy.runners.engine import TensorRTRunner
from acmix_deploy.runners.ort import OnnxRuntimeRunner
from acmix_deploy.runners.pytorch import TorchRunner, deploy_form

__all__ = [
    "ALIASES", "BACKENDS", "ORT_BACKENDS", "TORCH_BACKENDS", "BackendUnavailable", "ModelSourceLike",
    "OnnxRuntimeRunner", "Runner", "RunnerOptions", "TensorMeta", "TensorRTRunner", "TorchRunner",
    "canonical_backend", "create_runner", "cuda_available", "deploy_form", "make_images", "padded_chunks",
    "run_chunked",
]


def _ort_runner(backend: str, source: ModelSourceLike, options: RunnerOptions) -> OnnxRuntimeRunner:
    if source.onnx_path is None and source.onnx_factory is None:
        raise BackendUnavailable(f"{backend} needs an ONNX model (--model NAME or --onnx FILE)")
    try:
        import onnxruntime  # noqa: F401 - a missing install is a table row, not an error
    except ImportError:
        raise BackendUnavailable("onnxruntime is not installed (pip install 'acmix-deploy[cpu]')") from None
    return OnnxRuntimeRunner(source.require_onnx(Path(options.workdir or ".")), backend, options)


def create_runner(backend: str, source: ModelSourceLike, options: RunnerOptions) -> Runner:
    """An activated runner for a benchmark's model description; raises BackendUnavailable with the
    reason when it cannot run here."""
    backend = canonical_backend(backend)
    runner: Runner
    if backend in TORCH_BACKENDS:
        if source.torch_factory is None:
            raise BackendUnavailable(f"{backend} needs a PyTorch model (--model NAME), not a file")
        runner = TorchRunner(source.torch_factory, backend, options)
    elif backend in ORT_BACKENDS:
        runner = _ort_runner(backend, source, options)
    else:
        if not cuda_available():  # first: without a GPU, no engine file would help
            raise BackendUnavailable("TensorRT needs a CUDA GPU; none found")
        if source.engine_path is None:
            raise BackendUnavailable("tensorrt needs an engine file (--engine F; build one with the trt commands)")
        runner = TensorRTRunner(source.engine_path, backend, options, require_gpu_first=False)
    return runner.activate()
