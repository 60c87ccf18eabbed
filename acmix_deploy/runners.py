"""Backends behind one runner interface (torch eager / deploy / compile, ONNX Runtime, TensorRT).

A Runner is built by `create_runner(backend, source, options)`; `prepare(batch)` returns inputs
for that batch (already on the device unless transfers are timed) and runs the model once, so a
backend that cannot run the model fails there and not in the middle of a timing loop;
`runner(inputs)` runs one inference; `synchronize()` waits for queued device work; `close()`
frees it. A backend that cannot be used on this machine raises BackendUnavailable with the reason,
which reports print as an "unavailable: <reason>" row. Heavy libraries are imported lazily.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from acmix_deploy.trt.gpu import torch_cuda_available

if TYPE_CHECKING:
    from acmix_deploy.bench.sources import ModelSource

TORCH_BACKENDS = ("torch-eager", "torch-deploy", "torch-compile")
ORT_BACKENDS = ("onnxruntime", "onnxruntime-cuda", "onnxruntime-trt")
BACKENDS = TORCH_BACKENDS + ORT_BACKENDS + ("tensorrt",)
ALIASES = {
    "torch": "torch-eager",
    "eager": "torch-eager",
    "deploy": "torch-deploy",
    "compile": "torch-compile",
    "ort": "onnxruntime",
    "ort-cuda": "onnxruntime-cuda",
    "ort-trt": "onnxruntime-trt",
    "trt": "tensorrt",
}
_ORT_PROVIDER = {
    "onnxruntime": "CPUExecutionProvider",
    "onnxruntime-cuda": "CUDAExecutionProvider",
    "onnxruntime-trt": "TensorrtExecutionProvider",
}


class BackendUnavailable(Exception):
    """This backend cannot run here (missing library, no GPU, no suitable model file)."""


def canonical_backend(name: str) -> str:
    """Canonical backend name; raises ValueError listing the valid ones."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)} (aliases: {', '.join(ALIASES)})")
    return key


@dataclass(frozen=True)
class RunnerOptions:
    """Settings shared by every runner of one benchmark."""

    input_size: tuple[int, int] = (224, 224)
    threads: int | None = None
    device: str = "cpu"  # where torch backends run: "cpu" or "cuda"
    spinning: bool = True  # ONNX Runtime intra-op spinning; False when sessions are interleaved
    cuda_graph: bool = False
    include_transfers: bool = False  # time host->device input and device->host output copies
    seed: int = 0
    workdir: str | None = None  # where lazily exported ONNX files go


@runtime_checkable
class Runner(Protocol):
    name: str
    device: str
    warnings: list[str]  # things the user should know about this run (e.g. an engine built elsewhere)

    def prepare(self, batch: int) -> Any: ...

    def __call__(self, inputs: Any) -> Any: ...

    def synchronize(self) -> None: ...

    def close(self) -> None: ...


def make_images(batch: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Deterministic N(0, 1) float32 images (N, 3, H, W): the same input for model and baseline."""
    rng = np.random.default_rng(seed + 1000 * batch)
    return rng.standard_normal((batch, 3, size[0], size[1]), dtype=np.float32)


cuda_available = torch_cuda_available  # public name kept (bench.run and tests use it)


# ---------------------------------------------------------------------------------------- torch


def _deploy_form(model: Any) -> Any:
    """The model's deploy (inference-time) form: its own .deploy() where it has one, else
    acmix_deploy.nn.switch_to_deploy (a plain eval copy for models without ACmix or Swin blocks)."""
    if callable(getattr(model, "deploy", None)):
        out = model.deploy()
    else:
        from acmix_deploy.nn import switch_to_deploy

        out = switch_to_deploy(model)
    return model if out is None else out


class TorchRunner:
    """A PyTorch module run eagerly, in its deploy form, or through torch.compile."""

    def __init__(self, backend: str, source: ModelSource, options: RunnerOptions) -> None:
        self.warnings: list[str] = []
        if source.torch_factory is None:
            raise BackendUnavailable(f"{backend} needs a PyTorch model (--model NAME), not a file")
        try:
            import torch
        except ImportError:
            raise BackendUnavailable("PyTorch is not installed") from None
        if options.device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("no CUDA GPU for PyTorch")
        if backend == "torch-compile" and options.device == "cpu" and shutil.which("c++") is None and shutil.which("g++") is None:
            raise BackendUnavailable("torch.compile on CPU needs a C++ compiler (none on PATH)")
        self.name = backend
        self.device = options.device
        self._torch = torch
        self._opts = options
        if options.threads:
            torch.set_num_threads(options.threads)
        model = source.torch_factory().eval()
        if backend == "torch-deploy":
            model = _deploy_form(model).eval()
        model = model.to(options.device)
        if backend == "torch-compile":
            model = torch.compile(model)
        self._model = model
        self._graph: Any = None
        self._static_in: Any = None
        self._static_out: Any = None

    def _capture(self, x: Any) -> None:
        """Record one forward pass into a CUDA graph that __call__ replays."""
        torch = self._torch
        self._static_in = x.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):
                self._model(self._static_in)
        torch.cuda.current_stream().wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph), torch.inference_mode():
            self._static_out = self._model(self._static_in)

    def prepare(self, batch: int) -> Any:
        torch = self._torch
        x = torch.from_numpy(make_images(batch, self._opts.input_size, self._opts.seed))
        if self.device == "cuda" and not self._opts.include_transfers:
            x = x.to(self.device)
        self._graph = None
        if self._opts.cuda_graph and self.device == "cuda":
            self._capture(x.to(self.device))
        self(x)
        self.synchronize()
        return x

    def __call__(self, inputs: Any) -> Any:
        torch = self._torch
        if self._graph is not None:
            if self._opts.include_transfers:
                self._static_in.copy_(inputs, non_blocking=False)
                self._graph.replay()
                return self._static_out.cpu()
            self._graph.replay()
            return self._static_out
        with torch.inference_mode():
            if self._opts.include_transfers and self.device != "cpu":
                return self._model(inputs.to(self.device)).cpu()
            return self._model(inputs)

    def synchronize(self) -> None:
        if self.device == "cuda":
            self._torch.cuda.synchronize()

    def close(self) -> None:
        self._model = None
        self._graph = None
        if self.device == "cuda":
            self._torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------- onnxruntime


class OrtRunner:
    """An ONNX Runtime session on the CPU, CUDA or TensorRT execution provider."""

    def __init__(self, backend: str, source: ModelSource, options: RunnerOptions) -> None:
        self.warnings: list[str] = []
        if source.onnx_path is None and source.onnx_factory is None:
            raise BackendUnavailable(f"{backend} needs an ONNX model (--model NAME or --onnx FILE)")
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("onnxruntime is not installed (pip install 'acmix-deploy[cpu]')") from None
        provider = _ORT_PROVIDER[backend]
        if provider not in ort.get_available_providers():
            raise BackendUnavailable(
                f"this onnxruntime build has no {provider} (available: {', '.join(ort.get_available_providers())})"
            )
        from pathlib import Path

        from acmix_deploy.ort import make_session

        path = source.require_onnx(Path(options.workdir or "."))
        providers: list[Any] = [provider]
        if provider == "CUDAExecutionProvider" and options.cuda_graph:
            providers = [(provider, {"enable_cuda_graph": "1"})]
        if provider != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")
        self._session = make_session(path, threads=options.threads, spinning=options.spinning, providers=providers)
        if self._session.get_providers()[0] != provider:
            raise BackendUnavailable(f"{provider} failed to initialise (onnxruntime fell back to the CPU)")
        self.name = backend
        self.device = "cpu" if provider == "CPUExecutionProvider" else "cuda"
        self._ort = ort
        self._opts = options
        first = self._session.get_inputs()[0]
        self._input_name = first.name
        self._fixed_batch = first.shape[0] if isinstance(first.shape[0], int) else None
        self._output_names = [o.name for o in self._session.get_outputs()]
        self._binding: Any = None

    def prepare(self, batch: int) -> Any:
        if self._fixed_batch is not None and self._fixed_batch != batch:
            raise ValueError(f"the ONNX model has a fixed batch of {self._fixed_batch}; export with a dynamic batch")
        x = make_images(batch, self._opts.input_size, self._opts.seed)
        self._binding = None
        if self.device == "cuda" and not self._opts.include_transfers:
            value = self._ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
            binding = self._session.io_binding()
            binding.bind_ortvalue_input(self._input_name, value)
            for name in self._output_names:
                binding.bind_output(name, "cuda")
            self._binding = binding
            self._device_input = value  # keep the device buffer alive
        self(x)
        return x

    def __call__(self, inputs: Any) -> Any:
        if self._binding is not None:
            self._session.run_with_iobinding(self._binding)
            return None
        return self._session.run(self._output_names, {self._input_name: inputs})

    def synchronize(self) -> None:
        """Session.run returns after the device finished: nothing is left queued."""

    def close(self) -> None:
        self._binding = None
        self._session = None


# ------------------------------------------------------------------------------------ tensorrt


def _engine_runner_class() -> Callable[..., Any]:
    """EngineRunner, imported when needed (it imports TensorRT only when an engine is opened)."""
    from acmix_deploy.trt.runner import EngineRunner

    return EngineRunner


class TensorRTRunner:
    """A serialized TensorRT engine run through acmix_deploy.trt.runner.EngineRunner.

    EngineRunner enqueues on torch's current CUDA stream, so CUDA events on that stream time it
    exactly; calls here do not synchronize (the timing loop does).
    """

    def __init__(self, backend: str, source: ModelSource, options: RunnerOptions) -> None:
        if not cuda_available():  # first: without a GPU, no engine file would help
            raise BackendUnavailable("TensorRT needs a CUDA GPU; none found")
        if source.engine_path is None:
            raise BackendUnavailable("tensorrt needs an engine file (--engine F; build one with the trt commands)")
        engine_cls = _engine_runner_class()
        from acmix_deploy.errors import AcmixError

        try:
            self._runner = engine_cls(str(source.engine_path))
        except AcmixError as exc:  # wrong TensorRT flavour/version, GPU, missing sidecar ...
            raise BackendUnavailable(str(exc)) from None
        import torch

        self._torch = torch
        self._input_name = self._runner.input_names[0]
        self.name = backend
        self.device = "cuda"
        self._opts = options
        self.context = self._runner.context  # for the per-layer profiler
        self.trt = self._runner.trt
        self.warnings = list(self._runner.warnings)  # built on another GPU / TensorRT version

    def prepare(self, batch: int) -> Any:
        x = self._torch.from_numpy(make_images(batch, self._opts.input_size, self._opts.seed))
        if not self._opts.include_transfers:
            x = x.cuda()
        self(x)
        self.synchronize()
        return x

    def __call__(self, inputs: Any) -> Any:
        out = self._runner.infer({self._input_name: inputs}, sync=False)
        if self._opts.include_transfers:
            return {k: v.cpu() for k, v in out.items()}  # .cpu() waits for the engine
        return out

    def synchronize(self) -> None:
        self._torch.cuda.synchronize()

    def close(self) -> None:
        self._runner = None
        self.context = None


def create_runner(backend: str, source: ModelSource, options: RunnerOptions) -> Runner:
    """Build a runner; raises BackendUnavailable with the reason when it cannot run here."""
    backend = canonical_backend(backend)
    if backend in TORCH_BACKENDS:
        return TorchRunner(backend, source, options)
    if backend in ORT_BACKENDS:
        return OrtRunner(backend, source, options)
    return TensorRTRunner(backend, source, options)
