"""Environment report: which backends import, their versions, the GPU and its compute capability."""

from __future__ import annotations

import importlib
from typing import Any


def _module_row(name: str, module: str, hint: str) -> dict[str, Any]:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # any import failure means "not usable here"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"name": name, "available": False, "version": None, "details": f"{reason}; {hint}"}
    return {"name": name, "available": True, "version": getattr(mod, "__version__", "?"),
            "details": getattr(mod, "__version__", "?")}


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
        _module_row("tensorrt", "tensorrt", "on a GPU server: pip install 'acmix-deploy[gpu]' or use the Dockerfile"),
        _module_row("tensorrt_rtx", "tensorrt_rtx", "pip install 'acmix-deploy[rtx]' (tensorrt-rtx-cu12)"),
    ]
    return rows
