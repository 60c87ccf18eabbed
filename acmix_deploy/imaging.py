"""The eval image pipeline shared by training/eval (train.data) and int8 calibration (precision.calib),
so both feed a model the same pixels and read the same files: PIL and numpy only (no torch)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from acmix_deploy.errors import AcmixError

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def list_images(folder: Path) -> list[Path]:
    """The image files (by suffix) under `folder`, sorted; hidden files and folders (macOS ._name
    AppleDouble files, .thumbs) are skipped. Training, eval and int8 calibration all read these."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def json_value(raw: str) -> Any:
    """An ONNX metadata_props value: JSON where it parses (export writes JSON), else the raw string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw
    except RecursionError:
        from acmix_deploy.errors import AcmixError

        raise AcmixError(f"ONNX metadata value {raw[:20]!r}... is nested too deeply to read (malformed file)") from None


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
