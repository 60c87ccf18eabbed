"""The one preprocessing description and the one image pipeline (PIL and numpy only, no torch).

`Preprocessing` says what a model expects of an image: height x width, mean, std, crop ratio and
interpolation; the channel order is always RGB and the layout CHW float32 (the model cards, export's
metadata and Triton's preprocess template know no other). It is built from a model card (training; a
checkpoint carries its model's card), from ONNX metadata (int8 calibration, eval, engines through
their ONNX file) or from options, and it is applied by one method, so int8 calibration,
`acmix-deploy eval` and training's validation cannot decode the same file differently:

    decode (PIL, RGB) -> resize the shorter side to round(max(H, W) / crop_ratio) -> center crop
    H x W -> / 255 -> (x - mean) / std -> (3, H, W) float32
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from acmix_deploy.errors import AcmixError

if TYPE_CHECKING:
    import onnx

    from acmix_deploy.registry import ModelCard

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
CHANNELS = "RGB"  # the one channel order (PIL mode) every model of the toolkit takes
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_RATIO = 0.875
PRE_KEYS = ("input_size", "mean", "std", "crop_ratio", "interpolation")  # card / metadata / option keys
# What int8 calibration assumes for an ONNX file without metadata (eval asks for options instead);
# a missing interpolation is bilinear for every reader.
IMAGENET_DEFAULTS = {"input_size": 224, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                     "crop_ratio": DEFAULT_CROP_RATIO}


def list_images(folder: Path) -> list[Path]:
    """The image files (by suffix) under `folder`, sorted; hidden files and folders (macOS ._name
    AppleDouble files, .thumbs) are skipped. Training, eval and int8 calibration all read these."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


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


def decode(path: str | os.PathLike[str]) -> Any:
    """The decoded image of a file, as a PIL image in CHANNELS order (PIL's errors pass through: the
    callers decide between skipping a corrupt file and stopping)."""
    from PIL import Image

    with Image.open(path) as img:
        return img.convert(CHANNELS)


def _size(value: Any) -> tuple[int, int]:
    """(height, width) of an `input_size`: N, [N], [H, W] or [C, H, W] (export writes [3, S, S])."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("empty input_size")
        return int(value[-2] if len(value) > 1 else value[0]), int(value[-1])
    return int(value), int(value)


@dataclass(frozen=True)
class Preprocessing:
    """How raw images become model inputs; `source` says where the values came from (not compared)."""

    height: int
    width: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_ratio: float = DEFAULT_CROP_RATIO
    interpolation: str = "bilinear"
    source: str = field(default="defaults", compare=False)

    @property
    def input_size(self) -> int:
        """The side of a square input (training and eval take square images only)."""
        if self.height != self.width:
            raise AcmixError(f"only square inputs are supported, got {self.height}x{self.width}")
        return self.height

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model card") -> Preprocessing:
        """From the card layout (PRE_KEYS; `input_size` as N, [H, W] or [3, H, W]); validated."""
        height, width = _size(data["input_size"])
        pre = cls(
            height=height,
            width=width,
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            crop_ratio=float(data["crop_ratio"]),
            interpolation=str(data.get("interpolation", "bilinear")).lower(),
            source=source,
        )
        pre.validate()
        return pre

    @classmethod
    def from_card(cls, card: ModelCard) -> Preprocessing:
        """A model card's eval preprocessing (a checkpoint's card is the one saved in the file)."""
        return cls.from_dict(card.preprocessing(), "model card")

    @classmethod
    def from_metadata(
        cls,
        meta: dict[str, str],
        fallback: dict[str, Any] | None = None,
        graph_size: tuple[int | None, int | None] = (None, None),
        what: str = "the ONNX model",
        defaults: bool = False,
    ) -> Preprocessing:
        """From ONNX metadata_props (JSON values), then `fallback` options, then the graph's static size,
        then (with `defaults`, for calibration) IMAGENET_DEFAULTS; a key still missing is a one-line
        error asking for the option. A static graph size must match the size the values give."""
        from acmix_deploy.onnxio import json_value

        fallback = {k: v for k, v in (fallback or {}).items() if v is not None}
        height, width = graph_size
        graph = {"input_size": [height, width]} if height and width else {}
        layers = (
            ("ONNX metadata", {k: json_value(v) for k, v in meta.items() if k in PRE_KEYS}),
            ("options", fallback),
            ("graph shape", graph),
            ("ImageNet defaults", IMAGENET_DEFAULTS if defaults else {}),
        )
        values: dict[str, Any] = {}
        sources: list[str] = []
        for label, given in layers:
            taken = [k for k in PRE_KEYS if k in given and k not in values]
            values.update((k, given[k]) for k in taken)
            sources += [label] if taken else []
        missing = [k for k in PRE_KEYS[:4] if k not in values]
        if missing:
            raise AcmixError(
                f"{what} lacks preprocessing metadata ({', '.join(missing)}); export it with `acmix-deploy export` "
                "or pass --img-size, --mean, --std and --crop-ratio (and --interpolation)"
            )
        try:
            pre = cls.from_dict(values, " + ".join(sources))
        except (TypeError, ValueError, KeyError):
            raise AcmixError(f"{what} has malformed preprocessing metadata: {values}") from None
        if graph and (pre.height, pre.width) != (height, width):
            raise AcmixError(f"{what}: the graph takes {height}x{width} images but its preprocessing says "
                             f"{pre.height}x{pre.width} px")
        return pre

    @classmethod
    def from_onnx(
        cls, model: onnx.ModelProto, fallback: dict[str, Any] | None = None, what: str = "the ONNX model",
        defaults: bool = False,
    ) -> Preprocessing:
        """The preprocessing of an ONNX model: its metadata and its (N, 3, H, W) image input."""
        from acmix_deploy.onnxio import input_info, metadata

        _, dims = input_info(model)
        if len(dims) != 4 or dims[1] != 3:
            raise AcmixError(f"expected an image input (N, 3, H, W); the model's input has dims {dims}")
        height, width = (d if isinstance(d, int) and d > 0 else None for d in dims[2:])
        return cls.from_metadata(metadata(model), fallback, (height, width), what, defaults)

    def validate(self) -> None:
        if self.height < 1 or self.width < 1:
            raise AcmixError(f"input size must be positive, got {self.height}x{self.width}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise AcmixError("mean and std need 3 values (R, G, B)")
        if any(s <= 0 for s in self.std):
            raise AcmixError(f"std values must be positive, got {list(self.std)}")
        if not 0 < self.crop_ratio <= 1:
            raise AcmixError(f"crop ratio must be in (0, 1], got {self.crop_ratio}")
        if self.interpolation not in INTERPOLATIONS:
            raise AcmixError(f"unknown interpolation {self.interpolation!r}; use one of {', '.join(INTERPOLATIONS)}")

    def to_dict(self) -> dict[str, Any]:
        """The model card's `preprocessing()` layout (JSON-ready; input_size one int when square)."""
        size: int | list[int] = self.height if self.height == self.width else [self.height, self.width]
        return {"input_size": size, "mean": list(self.mean), "std": list(self.std),
                "crop_ratio": self.crop_ratio, "interpolation": self.interpolation}

    def describe(self) -> str:
        size = f"{self.height}" if self.height == self.width else f"{self.height}x{self.width}"
        return (
            f"{size} px, crop ratio {self.crop_ratio:g}, {self.interpolation}, "
            f"mean {[round(m, 4) for m in self.mean]}, std {[round(s, 4) for s in self.std]}"
        )

    def __call__(self, image: Any) -> np.ndarray:
        """One decoded PIL image -> (3, H, W) float32: THE eval pipeline (resize, center crop, normalise)."""
        if image.mode != CHANNELS:
            image = image.convert(CHANNELS)
        crop = resize_center_crop(image, self.height, self.width, self.crop_ratio, self.interpolation)
        return normalize(crop, self.mean, self.std)

    def file(self, path: str | os.PathLike[str]) -> np.ndarray:
        """An image file -> (3, H, W) float32 (decode, then the eval pipeline)."""
        return self(decode(path))

    def uint8_batch(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB -> (N, 3, H', W') float32 through the eval pipeline."""
        from PIL import Image

        return np.stack([self(Image.fromarray(np.asarray(img))) for img in batch]).astype(np.float32)
