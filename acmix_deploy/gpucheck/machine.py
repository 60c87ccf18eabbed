"""The machine block of a gpu-check report: GPU, driver, CUDA, torch and ONNX Runtime versions."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any


def driver_version() -> str | None:
    """The NVIDIA driver version from nvidia-smi (torch does not expose it); None without one."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=15, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.strip().splitlines()
    return first[0].strip() if first else None


def _onnxruntime() -> tuple[str | None, list[str]]:
    try:
        import onnxruntime as ort
    except Exception:  # any import failure: not usable here
        return None, []
    return ort.__version__, list(ort.get_available_providers())


def machine_block() -> dict[str, Any]:
    """bench.machine.machine_info() plus the fields a GPU report is read for, at the top level."""
    from acmix_deploy.bench.machine import machine_info

    info = machine_info()
    ort_version, providers = _onnxruntime()
    torch_version = None
    cudnn = None
    try:
        import torch

        torch_version = torch.__version__
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except ImportError:
        pass
    info.update({
        "driver": driver_version(),
        "torch": torch_version,
        "cudnn": cudnn,
        "onnxruntime": ort_version,
        "onnxruntime_providers": providers,
    })
    return info
