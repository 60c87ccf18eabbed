"""Environment report: which backends import, their versions, the GPU and its compute capability."""

from __future__ import annotations

import importlib
from typing import Any

from acmix_deploy.errors import first_line
from acmix_deploy.runners.trt_import import TENSORRT, TENSORRT_RTX, _try_import


def _row(name: str, mod: Any, reason: str, hint: str) -> dict[str, Any]:
    if mod is None:
        return {"name": name, "available": False, "version": None, "details": f"{reason}; {hint}"}
    version = getattr(mod, "__version__", "?")
    return {"name": name, "available": True, "version": version, "details": version}


def _module_row(name: str, module: str, hint: str) -> dict[str, Any]:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # any import failure means "not usable here"
        reason = first_line(exc)
        return _row(name, None, reason, hint)
    return _row(name, mod, "", hint)


def _trt_row(name: str, flavour: str, hint: str) -> dict[str, Any]:
    """Probe TensorRT the way `build-trt` does, so a stub wheel without a Builder reads as missing."""
    mod, reason = _try_import(flavour)
    return _row(name, mod, reason, hint)


def collect() -> list[dict[str, Any]]:
    rows = [_module_row("torch", "torch", "pip install torch")]
    try:
        import torch

        if torch.cuda.is_available():
            gpus = []
            for i in range(torch.cuda.device_count()):
                major, minor = torch.cuda.get_device_capability(i)
                gpus.append(f"{torch.cuda.get_device_name(i)} (sm_{major}{minor})")
            rows.append({"name": "CUDA", "available": True, "version": torch.version.cuda,
                         "details": f"CUDA {torch.version.cuda}: " + ", ".join(gpus)})
        else:
            rows.append({"name": "CUDA", "available": False, "version": None,
                         "details": f"no CUDA GPU visible to torch {torch.__version__}"})
    except ImportError:
        pass
    ort = _module_row("onnxruntime", "onnxruntime", "pip install 'acmix-deploy[cpu]' (or [gpu])")
    if ort["available"]:
        import onnxruntime

        ort["details"] = f"{ort['version']}; providers: {', '.join(onnxruntime.get_available_providers())}"
    rows += [
        ort,
        _module_row("onnx", "onnx", "pip install onnx"),
        _module_row("onnx-graphsurgeon", "onnx_graphsurgeon", "pip install onnx-graphsurgeon"),
        _trt_row("tensorrt", TENSORRT, "on a GPU server: pip install 'acmix-deploy[gpu]' or use the Dockerfile"),
        _trt_row("tensorrt_rtx", TENSORRT_RTX, "pip install 'acmix-deploy[rtx]' (tensorrt-rtx-cu12)"),
    ]
    return rows
