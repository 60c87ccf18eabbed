"""Which machine and library versions produced a measurement (stored with every result)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

_ENV_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
PACKAGES = ("acmix-deploy", "torch", "onnxruntime", "onnxruntime-gpu", "onnx", "numpy", "tensorrt", "tensorrt-rtx-cu12")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def physical_cores() -> int | None:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo; None where that is not available."""
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
    except OSError:
        return None
    cores = set()
    phys = core = None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if core is not None:
                cores.add((phys, core))
            phys = core = None
        elif line.startswith("physical id"):
            phys = line.split(":", 1)[1].strip()
        elif line.startswith("core id"):
            core = line.split(":", 1)[1].strip()
    return len(cores) or None


def usable_cpus() -> int:
    """CPUs this process may run on (affinity mask), the default thread count of a benchmark."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def memory_total_mb() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    if "acmix-deploy" not in out:
        from acmix_deploy import __version__

        out["acmix-deploy"] = __version__
    return out


def gpus() -> list[dict[str, Any]]:
    """CUDA devices torch can see (no import of torch's CUDA runtime unless torch is present)."""
    from acmix_deploy.runners.gpu import torch_cuda_available

    if not torch_cuda_available():  # also False (not a crash) for a broken CUDA install
        return []
    import torch

    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        out.append(
            {
                "name": props.name,
                "memory_mb": round(props.total_memory / 2**20),
                "capability": f"{props.major}.{props.minor}",
            }
        )
    return out


def machine_info() -> dict[str, Any]:
    import sys

    cuda = None
    try:
        import torch

        cuda = torch.version.cuda
    except ImportError:
        pass
    return {
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": cpu_model(),
        "cpu_logical_cores": os.cpu_count(),
        "cpu_physical_cores": physical_cores(),
        "cpu_usable": usable_cpus(),
        "memory_total_mb": memory_total_mb(),
        "gpus": gpus(),
        "cuda": cuda,
        "versions": versions(),
        "env": {k: os.environ[k] for k in _ENV_VARS if k in os.environ},
    }
