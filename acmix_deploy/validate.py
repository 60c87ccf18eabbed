"""Checks of option values at the boundary where they enter (CLI and Python API alike), one rule each.

A value that passes here cannot crash a later stage with a traceback (ZeroDivisionError, a negative
shape, an out-of-memory allocation); a value that fails is named in one line.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from acmix_deploy.errors import AcmixError

MIN_OPSET = 18  # the torch.export-based exporter's floor
# Activation memory of a forward pass, in bytes per input pixel per image: a deliberately low
# estimate (the stem alone keeps 64 channels at half resolution, ACmix blocks unfold k_att^2 copies),
# so a refusal means the run certainly could not fit.
_BYTES_PER_PIXEL = 400


def positive_int(value: Any, option: str, allow_none: bool = True) -> int | None:
    """An integer >= 1 (bool and float are not integers here)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise AcmixError(f"{option} must be a whole number >= 1, got {value!r}")
    if value < 1:
        raise AcmixError(f"{option} must be >= 1, got {value}")
    return value


def positive_float(value: Any, option: str) -> float:
    """A finite number > 0 (a margin or a scale of 0 divides by zero later)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AcmixError(f"{option} must be a number > 0, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise AcmixError(f"{option} must be a finite number > 0, got {value}")
    return number


def physical_memory() -> int | None:
    """Bytes of RAM of this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def img_size(value: Any, option: str = "--img-size", batch: int = 1) -> int | None:
    """An image side >= 1 whose forward pass can fit in this machine's memory (one rule for every
    command: export, train, eval, bench, profile)."""
    size = positive_int(value, option)
    if size is None:
        return None
    need = size * size * max(1, batch) * _BYTES_PER_PIXEL
    have = physical_memory()
    if have is not None and need > have:
        raise AcmixError(
            f"{option} {size} needs at least {need / 2**30:.0f} GiB of memory for one forward pass "
            f"(estimate), this machine has {have / 2**30:.0f} GiB: choose a smaller size"
        )
    return size


def opset(value: Any) -> int:
    """An ONNX opset the exporter can write and the installed onnx package knows."""
    import onnx

    top = onnx.defs.onnx_opset_version()
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_OPSET <= value <= top:
        raise AcmixError(f"--opset must be {MIN_OPSET}..{top} (the installed onnx's newest), got {value}")
    return value


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}


def parse_size(text: str | int) -> int:
    """'4GiB', '512MiB', '1.5G', '1073741824' -> bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise AcmixError(f"bad size {text!r}; write it like 4GiB, 512MiB or 1073741824")
    value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value <= 0:
        raise AcmixError(f"size {text!r} must be positive")
    return value


def is_size(text: str) -> bool:
    """True when `text` reads as a memory size (4G, 512MiB, 1024): how a --workspace meant as TensorRT's
    scratch memory (build-trt --trt-workspace) is told apart from a folder name."""
    try:
        parse_size(text)
    except AcmixError:
        return False
    return True
