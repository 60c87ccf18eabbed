"""What GPU is here, without requiring one: torch.cuda first, nvidia-smi as a fallback."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInfo:
    name: str
    capability: tuple[int, int]
    index: int = 0

    @property
    def cc(self) -> str:
        return f"{self.capability[0]}.{self.capability[1]}"


def torch_cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # a broken CUDA install must not crash a CPU-only command
        return False


def gpu_info(index: int = 0) -> GpuInfo | None:
    """The GPU at `index`, or None when there is none (or no way to ask)."""
    if torch_cuda_available():
        import torch

        if index < torch.cuda.device_count():
            major, minor = torch.cuda.get_device_capability(index)
            return GpuInfo(torch.cuda.get_device_name(index), (major, minor), index)
        return None
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=15, check=True,
        ).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    if index >= len(out):
        return None
    try:
        name, cap = (part.strip() for part in out[index].rsplit(",", 1))
        major, minor = cap.split(".")
        return GpuInfo(name, (int(major), int(minor)), index)
    except ValueError:
        return None
