"""Run a serialized engine on torch CUDA tensors (data_ptr + set_tensor_address + execute_async_v3).

No pycuda / cuda-python: torch owns the device memory and the stream. Before anything touches a
GPU the runner reads the sidecar and refuses, in one line, an engine that the installed TensorRT
flavour / version cannot load, an engine file that is not the one the sidecar describes, and (once
the GPU is known) a GPU the engine was not built for.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from acmix_deploy.errors import AcmixError
from acmix_deploy.runners.trt_import import load_trt, make_logger
from acmix_deploy.runners.gpu import gpu_info, torch_cuda_available
from acmix_deploy.runners.sidecar import Sidecar, check_compatible, read_sidecar

_TORCH_DTYPES = {
    "float32": "float32", "float16": "float16", "bfloat16": "bfloat16", "int8": "int8", "uint8": "uint8",
    "int32": "int32", "int64": "int64", "bool": "bool",
}


def validate_feeds(sidecar: Sidecar, feeds: dict[str, tuple[tuple[int, ...], str]]) -> None:
    """One-line AcmixError for a missing / extra input, wrong rank, dims, batch range or dtype.

    `feeds` maps input name -> (shape, numpy dtype name); no GPU needed.
    """
    expected = {t.name: t for t in sidecar.inputs}
    missing = [n for n in expected if n not in feeds]
    extra = [n for n in feeds if n not in expected]
    if missing or extra:
        raise AcmixError(
            f"engine inputs are {', '.join(expected)}; "
            + (f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}")
        )
    for name, (shape, dtype) in feeds.items():
        info = expected[name]
        profile = sidecar.profiles.get(name)
        want = "(" + ", ".join("N" if d < 0 else str(d) for d in info.shape) + ")"
        if len(shape) != len(info.shape):
            raise AcmixError(f"input {name}: shape {tuple(shape)} does not match the engine's {want}")
        for axis, (got, fixed) in enumerate(zip(shape, info.shape)):
            if fixed >= 0 and got != fixed:
                raise AcmixError(f"input {name}: shape {tuple(shape)} does not match the engine's {want}")
            if fixed < 0 and profile and not profile["min"][axis] <= got <= profile["max"][axis]:
                what = "batch" if axis == 0 else f"dimension {axis}"
                raise AcmixError(
                    f"input {name}: {what} {got} is outside the engine's range "
                    f"{profile['min'][axis]}..{profile['max'][axis]} (rebuild with a wider --min-batch/--max-batch)"
                )
        if dtype != info.dtype:
            raise AcmixError(f"input {name}: dtype {dtype}, the engine expects {info.dtype}")


def check_engine_file(engine_path: Path, sidecar: Sidecar) -> bytes:
    """The engine bytes, after checking they are the ones the sidecar was written for."""
    from acmix_deploy.fileio import check_input_file

    data = check_input_file(engine_path, "engine").read_bytes()
    if hashlib.sha256(data).hexdigest() != sidecar.engine_sha256:
        raise AcmixError(f"{engine_path.name} does not match its sidecar (sha256 differs): rebuild it")
    return data


def resolve_runtime(sidecar: Sidecar, runtime: str = "auto") -> tuple[ModuleType, str, str, list[str]]:
    """(TensorRT module, flavour, version, warnings) to load the sidecar's engine with, after the
    GPU-free compatibility check; "auto" means the flavour that built the engine."""
    trt, flavour, version = load_trt(sidecar.trt_flavour if runtime == "auto" else runtime)
    return trt, flavour, version, check_compatible(sidecar, flavour, version, capability=None)


def deserialize_engine(trt: ModuleType, data: bytes, device: Any, what: str) -> tuple[Any, Any, Any]:
    """(runtime, engine, logger) for engine bytes on CUDA `device`; a one-line AcmixError naming
    `what` with TensorRT's last errors when it cannot load them. Keep the runtime alive with the engine."""
    import torch

    logger = make_logger(trt)
    with torch.cuda.device(device):
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        detail = "; ".join(logger.errors[-2:]) or "no message"
        raise AcmixError(f"TensorRT could not load {what}: {detail}")
    return runtime, engine, logger


class EngineRunner:
    """Load an engine and run it on torch tensors; checks happen in __init__, GPU-free ones first."""

    def __init__(self, engine_path: str | os.PathLike[str], runtime: str = "auto", device: int = 0):
        self.path = Path(engine_path)
        self.sidecar = read_sidecar(self.path)
        data = check_engine_file(self.path, self.sidecar)
        trt, flavour, version, self.warnings = resolve_runtime(self.sidecar, runtime)
        if not torch_cuda_available():
            raise AcmixError("running a TensorRT engine needs a CUDA GPU and a CUDA build of torch; none found here")
        gpu = gpu_info(device)
        if gpu is None:
            raise AcmixError(f"no CUDA device {device}")
        self.warnings += check_compatible(self.sidecar, flavour, version, gpu.capability, gpu.name)
        self.gpu = gpu

        import torch

        self._torch = torch
        self.device = torch.device("cuda", device)
        self.trt = trt  # the TensorRT module the engine was loaded with (for IProfiler and enums)
        self._runtime, self.engine, self._logger = deserialize_engine(trt, data, self.device, self.path.name)
        with torch.cuda.device(self.device):
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._out_dtypes = {o.name: getattr(torch, _TORCH_DTYPES[o.dtype]) for o in self.sidecar.outputs}
        self._keep: list[Any] = []

    def infer(self, feeds, sync: bool = True) -> dict[str, Any]:
        """Run on {name: tensor} (or one tensor for a single-input engine); returns {name: CUDA tensor}.

        CPU tensors and numpy arrays are copied to the engine's GPU. With `sync=False` the outputs
        are ready once torch's current stream reaches this point (torch ops on it are ordered).
        """
        torch = self._torch
        if not isinstance(feeds, dict):
            if len(self.input_names) != 1:
                raise AcmixError(f"this engine has inputs {', '.join(self.input_names)}: pass a dict")
            feeds = {self.input_names[0]: feeds}
        tensors = {}
        for name, value in feeds.items():
            t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
            tensors[name] = t
        validate_feeds(self.sidecar, {n: (tuple(t.shape), str(t.dtype).replace("torch.", "")) for n, t in tensors.items()})
        stream = torch.cuda.current_stream(self.device)
        bound = {}
        for name, t in tensors.items():
            t = t.to(self.device, non_blocking=True).contiguous()
            bound[name] = t
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        outputs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=self._out_dtypes[name], device=self.device)
            outputs[name] = out
            self.context.set_tensor_address(name, out.data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            detail = "; ".join(self._logger.errors[-2:]) or "no message"
            raise AcmixError(f"TensorRT failed to run {self.path.name}: {detail}")
        if sync:
            stream.synchronize()
            self._keep = []
        else:
            self._keep = [bound, outputs]  # keep device memory alive until the stream gets there
        return outputs

    def __call__(self, x, sync: bool = True):
        """The first output for one input tensor (logits for the models here)."""
        return self.infer(x, sync)[self.output_names[0]]
