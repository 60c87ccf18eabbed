"""The eval image pipeline shared by training/eval (train.data) and int8 calibration (precision.calib),
so both feed a model the same pixels: PIL and numpy only (no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from acmix_deploy.errors import AcmixError

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")


def resample_filter(name: str) -> Any:
    """PIL's resampling filter for an interpolation name (case-insensitive)."""
    from PIL import Image

    table = {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
    }
    try:
        return table[name.lower()]
    except KeyError:
        raise AcmixError(f"unknown interpolation {name!r}; use one of {', '.join(INTERPOLATIONS)}") from None


def normalize(image: Any, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """PIL RGB image -> (3, H, W) float32, (x / 255 - mean) / std."""
    arr = np.asarray(image, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def resize_center_crop(image: Any, height: int, width: int, crop_ratio: float, interpolation: str) -> Any:
    """Resize the shorter side to round(max(height, width) / crop_ratio), then center crop height x width."""
    w, h = image.size
    short = max(1, round(max(height, width) / crop_ratio))
    scale = short / min(w, h)
    nw, nh = max(width, round(w * scale)), max(height, round(h * scale))
    image = image.resize((nw, nh), resample_filter(interpolation))
    left, top = (nw - width) // 2, (nh - height) // 2
    return image.crop((left, top, left + width, top + height))
