"""ONNX Runtime runners (CPU / CUDA / TensorRT execution providers): the only place sessions are made.

`OnnxRuntimeRunner(model)` takes a path or the serialized model bytes (the gates check a model
before anything is written). One activated instance may be called from several threads: ONNX
Runtime's Session.run is thread-safe.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from acmix_deploy.errors import AcmixError, first_line
from acmix_deploy.runners.base import BackendUnavailable, Runner, RunnerOptions, TensorMeta, make_images

PROVIDERS = {
    "onnxruntime": "CPUExecutionProvider",
    "onnxruntime-cuda": "CUDAExecutionProvider",
    "onnxruntime-trt": "TensorrtExecutionProvider",
}
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def import_onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError:
        raise AcmixError(
            "onnxruntime is not installed: pip install 'acmix-deploy[cpu]' (or [gpu] on GPU servers)"
        ) from None
    return ort


def quiet_onnxruntime() -> None:
    """ORT's graph optimizers log warnings through the default logger, not the session's."""
    import_onnxruntime().set_default_logger_severity(3)


def make_session(
    model: str | os.PathLike[str] | bytes,
    threads: int | None = None,
    spinning: bool = True,
    providers: list[Any] | None = None,
    optimization: str = "all",
    profile_prefix: str | None = None,
    save_optimized: str | os.PathLike[str] | None = None,
) -> Any:
    """An InferenceSession; `spinning=False` when sessions are timed interleaved (DESIGN.md section 4).

    `save_optimized`: where ONNX Runtime writes the graph it actually runs (profilers need this
    session's own copy: generated node names differ between two sessions of one model).
    """
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    levels = dict(zip(OPTIMIZATION_LEVELS, (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    )))
    opts.graph_optimization_level = levels[optimization]
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    if save_optimized is not None:
        opts.optimized_model_filepath = str(save_optimized)
    src = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(src, sess_options=opts, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception classes
        raise AcmixError(f"ONNX Runtime cannot load the model: {first_line(exc)}") from None


def _static(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


class OnnxRuntimeRunner(Runner):
    """An ONNX Runtime session on the CPU, CUDA or TensorRT execution provider.

    `model`: a path or serialized bytes. `optimization`: ONNX Runtime's graph rewrites ("disable" when
    a gate must check our graph, not ORT's); `profile_prefix` turns on ORT's profiler;
    `save_optimized` writes the graph the session runs. Threads and spinning come from `options`.
    """

    thread_safe = True

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes,
        backend: str = "onnxruntime",
        options: RunnerOptions | None = None,
        optimization: str = "all",
        profile_prefix: str | None = None,
        save_optimized: str | os.PathLike[str] | None = None,
        strict_provider: bool = True,
    ) -> None:
        super().__init__()
        self.name = backend
        self.provider = PROVIDERS[backend]
        self.device = "cpu" if self.provider == "CPUExecutionProvider" else "cuda"
        self.model = model
        self.options = options or RunnerOptions()
        self._session_kwargs = {"optimization": optimization, "profile_prefix": profile_prefix,
                                "save_optimized": save_optimized}
        self._strict = strict_provider
        self.session: Any = None
        self._binding: Any = None

    def _providers(self) -> list[Any]:
        ort = import_onnxruntime()
        if self.provider not in ort.get_available_providers():
            raise BackendUnavailable(
                f"this onnxruntime build has no {self.provider} (available: {', '.join(ort.get_available_providers())})"
            )
        providers: list[Any] = [self.provider]
        if self.provider == "CUDAExecutionProvider" and self.options.cuda_graph:
            providers = [(self.provider, {"enable_cuda_graph": "1"})]
        if self.provider != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")
        return providers

    def _activate(self) -> None:
        self.session = make_session(self.model, threads=self.options.threads, spinning=self.options.spinning,
                                    providers=self._providers(), **self._session_kwargs)
        if self._strict and self.session.get_providers()[0] != self.provider:
            raise BackendUnavailable(f"{self.provider} failed to initialise (onnxruntime fell back to the CPU)")
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._input_name = self.session.get_inputs()[0].name

    def _deactivate(self) -> None:
        self._binding = None
        self.session = None

    def input_metadata(self) -> dict[str, TensorMeta]:
        return {
            i.name: TensorMeta(tuple(_static(d) for d in i.shape), np.dtype(_DTYPES.get(i.type, np.float32)))
            for i in self.session.get_inputs()
        }

    def metadata(self) -> dict[str, str]:
        """The model's metadata_props (export writes preprocessing and classes there)."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def batch_limits(self) -> tuple[int, int | None]:
        fixed = _static(self.session.get_inputs()[0].shape[0]) if self.session.get_inputs()[0].shape else None
        return (fixed, fixed) if fixed else (1, None)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))

    # -- benchmark hooks ----------------------------------------------------------------------------
    def prepare(self, batch: int) -> Any:
        lo, hi = self.batch_limits()
        if hi is not None and lo == hi and hi != batch:
            raise ValueError(f"the ONNX model has a fixed batch of {hi}; export with a dynamic batch")
        x = make_images(batch, self.options.input_size, self.options.seed)
        self._binding = None
        if self.device == "cuda" and not self.options.include_transfers:
            ort = import_onnxruntime()
            value = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
            binding = self.session.io_binding()
            binding.bind_ortvalue_input(self._input_name, value)
            for name in self.output_names:
                binding.bind_output(name, "cuda")
            self._binding = binding
            self._device_input = value  # keep the device buffer alive
        self(x)
        return x

    def __call__(self, inputs: Any) -> Any:
        if self._binding is not None:
            self.session.run_with_iobinding(self._binding)
            return None
        return self.session.run(self.output_names, {self._input_name: inputs})

    def synchronize(self) -> None:
        """Session.run returns after the device finished: nothing is left queued."""
