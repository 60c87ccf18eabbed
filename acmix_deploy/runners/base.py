"""The runner interface every backend implements (Polygraphy's runner model is the anchor).

A runner is configured in its constructor and opened by `activate()` (or `with runner:`); it then
takes `infer(feed) -> {output name: numpy array}` where `feed` maps input names to host arrays (a
bare array feeds the only input); `input_metadata()` says what it expects; `deactivate()` frees it.
Benchmarks use three more hooks: `prepare(batch)` makes inputs on the runner's device and runs once,
`runner(inputs)` runs one inference without copies or checks, `synchronize()` waits for device work.

Threads: `thread_safe` says whether one activated instance may be called from several threads at
once. ONNX Runtime sessions may (Session.run is thread-safe); a TensorRT execution context and a
CUDA-graph or torch.compile'd module may not. For those, `infer` holds a per-instance lock, so calls
from several threads queue instead of corrupting each other; make one runner per thread (Triton:
per model instance) to run them in parallel. A backend that cannot run here raises
BackendUnavailable with the reason. Heavy libraries (torch, onnxruntime, tensorrt) are imported only
when a runner is activated.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from acmix_deploy.errors import AcmixError
from acmix_deploy.runners.gpu import torch_cuda_available

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

cuda_available = torch_cuda_available  # public name kept (bench.run and tests use it)


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
    """Settings shared by every runner of one benchmark (and the defaults of a single inference)."""

    input_size: tuple[int, int] = (224, 224)
    threads: int | None = None
    device: str = "cpu"  # where torch backends run: "cpu" or "cuda"
    spinning: bool = True  # ONNX Runtime intra-op spinning; False when sessions are interleaved
    cuda_graph: bool = False
    include_transfers: bool = False  # time host->device input and device->host output copies
    seed: int = 0
    workdir: str | None = None  # where lazily exported ONNX files go


@dataclass(frozen=True)
class TensorMeta:
    """One input: shape with None for a dynamic axis, and its numpy dtype."""

    shape: tuple[int | None, ...]
    dtype: np.dtype


class ModelSourceLike(Protocol):
    """What create_runner reads from a model description (bench.sources.ModelSource is one)."""

    label: str
    torch_factory: Callable[[], Any] | None
    onnx_path: Any
    onnx_factory: Callable[..., Any] | None
    engine_path: Any

    def require_onnx(self, workdir: Any) -> Any: ...


def make_images(batch: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Deterministic N(0, 1) float32 images (N, 3, H, W): the same input for model and baseline."""
    rng = np.random.default_rng(seed + 1000 * batch)
    return rng.standard_normal((batch, 3, size[0], size[1]), dtype=np.float32)


def padded_chunks(x: np.ndarray, size: int, pad_to: int | None = None) -> Iterator[tuple[np.ndarray, int]]:
    """(chunk, n) over `x` in chunks of at most `size` rows, n being the chunk's real row count; a
    chunk shorter than `pad_to` (a static or minimum batch) is padded with copies of its last row."""
    for start in range(0, len(x), size):
        part = x[start : start + size]
        n = len(part)
        if pad_to is not None and n < pad_to:
            part = np.concatenate([part, np.repeat(part[-1:], pad_to - n, axis=0)])
        yield part, n


def run_chunked(fn: Callable[[np.ndarray], Any], x: np.ndarray, size: int, pad_to: int | None = None) -> np.ndarray:
    """`fn` over the `padded_chunks` of `x`; its float32 outputs without the padding rows, concatenated."""
    return np.concatenate([np.asarray(fn(part), dtype=np.float32)[:n] for part, n in padded_chunks(x, size, pad_to)])


class Runner:
    """Base of every runner: activation, the context manager, locking and batching around `_infer`.

    Subclasses set `name`, `device`, `thread_safe` and implement `_activate`, `_deactivate`,
    `_infer(feed)` and `input_metadata`; `batch_limits` where the model restricts the batch.
    """

    thread_safe: bool = True
    name: str = "runner"
    device: str = "cpu"

    def __init__(self) -> None:
        self.warnings: list[str] = []  # what the user should know about this run (e.g. another GPU)
        self.active = False
        self._lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------------
    def activate(self) -> Runner:
        if not self.active:
            self._activate()
            self.active = True
        return self

    def deactivate(self) -> None:
        if self.active:
            self.active = False
            self._deactivate()

    close = deactivate  # the benchmark's name for it

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    # -- inference --------------------------------------------------------------------------------
    def input_metadata(self) -> dict[str, TensorMeta]:
        raise NotImplementedError

    def batch_limits(self) -> tuple[int, int | None]:
        """(smallest, largest) batch the model takes; None: no upper limit."""
        return 1, None

    def infer(self, feed: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name as host numpy arrays; a bare array feeds the only input."""
        if not self.active:
            raise AcmixError(f"{self.name} runner is not active: call activate() or use `with runner:`")
        if isinstance(feed, np.ndarray) or not isinstance(feed, Mapping):
            names = list(self.input_metadata())
            if len(names) != 1:
                raise AcmixError(f"the model has inputs {', '.join(names)}: pass a dict")
            feed = {names[0]: feed}
        if self.thread_safe:
            return self._infer(dict(feed))
        with self._lock:
            return self._infer(dict(feed))

    def infer_chunked(self, x: np.ndarray, chunk: int = 16) -> dict[str, np.ndarray]:
        """All outputs over the rows of `x`, in chunks the model takes (padded to a fixed or minimum
        batch; the padding rows are dropped)."""
        lo, hi = self.batch_limits()
        size = hi if hi is not None and (hi < chunk or lo == hi) else chunk
        parts: dict[str, list[np.ndarray]] = {}
        for part, n in padded_chunks(x, size, lo if lo > 1 else None):
            for key, value in self.infer(np.ascontiguousarray(part)).items():
                parts.setdefault(key, []).append(np.asarray(value)[:n])
        return {k: np.concatenate(v) for k, v in parts.items()}

    def first_output(self, x: np.ndarray, chunk: int = 16) -> np.ndarray:
        """The first output over `x` as float32 (logits for the models here)."""
        return np.asarray(next(iter(self.infer_chunked(x, chunk).values())), dtype=np.float32)

    def _activate(self) -> None:
        raise NotImplementedError

    def _deactivate(self) -> None:
        raise NotImplementedError

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # -- benchmark hooks ----------------------------------------------------------------------------
    def prepare(self, batch: int) -> Any:
        raise NotImplementedError

    def __call__(self, inputs: Any) -> Any:
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (nothing to wait for on the CPU)."""
