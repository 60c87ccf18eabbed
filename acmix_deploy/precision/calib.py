"""Calibration / verification inputs: real images through the model's own preprocessing, or noise.

Sources: an ImageFolder-style directory (class subfolders of images, read with PIL), a .npy array
of uint8 NHWC RGB images, or "random". Preprocessing follows the model card that export writes into
the ONNX metadata (JSON strings under "input_size", "mean", "std", "crop_ratio", "interpolation"):
resize the shorter side to size / crop_ratio, center crop, /255, (x - mean) / std, NCHW float32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from acmix_deploy.errors import AcmixError
from acmix_deploy.imaging import json_value, list_images, normalize, resize_center_crop

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_RATIO = 0.875
RANDOM = "random"


@dataclass(frozen=True)
class Preprocess:
    """How raw images become model inputs; `source` says whether the ONNX metadata provided it."""

    height: int
    width: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_ratio: float = DEFAULT_CROP_RATIO
    interpolation: str = "bilinear"
    source: str = "defaults"

    def describe(self) -> str:
        return (
            f"{self.height}x{self.width}, crop ratio {self.crop_ratio:g}, mean {list(self.mean)}, "
            f"std {list(self.std)} (from {self.source})"
        )


def _json(meta: dict[str, str], key: str):
    return json_value(meta[key]) if key in meta else None


def input_info(model: onnx.ModelProto) -> tuple[str, list[int | str]]:
    """Name and dims (int, or the symbolic name) of the first real graph input."""
    inits = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in inp.type.tensor_type.shape.dim]
        return inp.name, dims
    raise AcmixError("the model has no graph input")


def preprocess_from_onnx(model: onnx.ModelProto) -> Preprocess:
    """Preprocessing from the export metadata, else ImageNet defaults at the graph's (or 224) size."""
    meta = {p.key: p.value for p in model.metadata_props}
    _, dims = input_info(model)
    if len(dims) != 4 or dims[1] != 3:
        raise AcmixError(f"expected an image input (N, 3, H, W); the model's input has dims {dims}")
    size = _json(meta, "input_size")
    height = width = None
    if isinstance(size, (int, float)):
        height = width = int(size)
    elif isinstance(size, list) and size:
        height, width = int(size[-2] if len(size) > 1 else size[0]), int(size[-1])
    # a static graph size wins: the graph cannot take anything else
    if isinstance(dims[2], int) and dims[2] > 0 and isinstance(dims[3], int) and dims[3] > 0:
        height, width = dims[2], dims[3]
    if height is None:
        height = width = 224
    found = [k for k in ("mean", "std", "crop_ratio", "input_size") if k in meta]
    mean = _json(meta, "mean") or IMAGENET_MEAN
    std = _json(meta, "std") or IMAGENET_STD
    crop = _json(meta, "crop_ratio") or DEFAULT_CROP_RATIO
    interp = _json(meta, "interpolation") or "bilinear"
    try:
        return Preprocess(
            height=height,
            width=width,
            mean=tuple(float(v) for v in mean),
            std=tuple(float(v) for v in std),
            crop_ratio=float(crop),
            interpolation=str(interp),
            source="ONNX metadata" if found else "ImageNet defaults",
        )
    except (TypeError, ValueError):
        raise AcmixError("the ONNX metadata mean/std/crop_ratio are malformed") from None


def preprocess_image(image, pre: Preprocess) -> np.ndarray:
    """One PIL image -> (3, H, W) float32: resize shorter side, center crop, normalise (the eval
    pipeline of training and `acmix-deploy eval`, acmix_deploy.imaging)."""
    crop = resize_center_crop(image.convert("RGB"), pre.height, pre.width, pre.crop_ratio, pre.interpolation)
    return normalize(crop, pre.mean, pre.std)


def preprocess_uint8(batch: np.ndarray, pre: Preprocess) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H', W') float32 through `preprocess_image`."""
    from PIL import Image

    return np.stack([preprocess_image(Image.fromarray(np.asarray(img)), pre) for img in batch]).astype(np.float32)


def _image_files(root: Path) -> list[Path]:
    files = list_images(root)
    if not files:
        raise AcmixError(f"{root} holds no images (expected class subfolders of .jpg/.png files)")
    return files


def count_source(source: str | os.PathLike[str]) -> int | None:
    """How many images a source holds (None for random: unlimited)."""
    if str(source) == RANDOM:
        return None
    path = Path(source)
    if path.is_dir():
        return len(_image_files(path))
    return int(_load_npy(path).shape[0])


def _load_npy(path: Path) -> np.ndarray:
    if not path.exists():
        raise AcmixError(f"calibration data {path} does not exist (give a folder, a .npy file or 'random')")
    if path.suffix.lower() != ".npy":
        raise AcmixError(f"calibration data {path}: expected a folder of images, a .npy file or 'random'")
    from acmix_deploy.fileio import check_input_file

    check_input_file(path, "calibration data")  # a named pipe would block np.load forever
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise AcmixError(f"{path} is not a readable .npy array: {exc}") from None
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise AcmixError(
            f"{path} holds {arr.dtype} {tuple(arr.shape)}; expected uint8 images (N, H, W, 3) in RGB order"
        )
    return arr


def load_images(
    source: str | os.PathLike[str], pre: Preprocess, indices: np.ndarray | list[int] | None = None,
    count: int | None = None, seed: int = 0,
) -> np.ndarray:
    """Model inputs (N, 3, H, W) float32 from `source`; `indices` pick images (random: `count`, `seed`)."""
    if str(source) == RANDOM:
        n = len(indices) if indices is not None else (count or 1)
        rng = np.random.default_rng(seed)
        # noise images through the same preprocessing, so the input range matches real images
        noise = rng.integers(0, 256, size=(n, pre.height, pre.width, 3), dtype=np.uint8)
        mean = np.asarray(pre.mean, np.float32)
        std = np.asarray(pre.std, np.float32)
        return np.ascontiguousarray(((noise / 255.0 - mean) / std).astype(np.float32).transpose(0, 3, 1, 2))
    path = Path(source)
    if path.is_dir():
        from PIL import Image, UnidentifiedImageError

        files = _image_files(path)
        chosen = [files[i] for i in (indices if indices is not None else range(min(count or len(files), len(files))))]
        out = []
        for f in chosen:
            try:
                with Image.open(f) as img:
                    out.append(preprocess_image(img, pre))
            except (UnidentifiedImageError, OSError) as exc:
                raise AcmixError(f"cannot read image {f}: {exc}") from None
        return np.stack(out).astype(np.float32)
    arr = _load_npy(path)
    idx = np.asarray(indices if indices is not None else range(min(count or len(arr), len(arr))))
    return preprocess_uint8(np.asarray(arr[np.sort(idx)]), pre)


@dataclass(frozen=True)
class Split:
    calib: np.ndarray  # indices of the calibration images
    holdout: np.ndarray  # indices of the held-out verification images (disjoint from calib)


def split_indices(total: int, calib_size: int, holdout_size: int, seed: int = 0) -> Split:
    """Disjoint calibration and held-out index sets from a seeded shuffle of `total` images.

    When the source is too small for both, the held-out set is cut to a quarter of it (at least one
    image) and calibration takes what remains, up to `calib_size`.
    """
    if total < 2:
        raise AcmixError("need at least 2 images: some to calibrate and some held out to verify")
    order = np.random.default_rng(seed).permutation(total)
    holdout = min(holdout_size, max(1, total // 4)) if calib_size + holdout_size > total else holdout_size
    calib = min(calib_size, total - holdout)
    return Split(calib=np.sort(order[:calib]), holdout=np.sort(order[total - holdout :]))


@dataclass(frozen=True)
class LoadedSplit:
    pre: Preprocess  # the model's preprocessing, applied to both sets
    calib: np.ndarray  # calibration / range-check inputs
    holdout: np.ndarray  # held-out verification inputs, disjoint from `calib` for real data
    total: int | None  # images in the source (None for random data)


def load_split(
    model: onnx.ModelProto, source: str | os.PathLike[str], calib_size: int, holdout_size: int, seed: int = 0,
    random_count: int | None = None,
) -> LoadedSplit:
    """Calibration and held-out inputs for `model` from `source` (`split_indices` for real data).

    Random data draws `calib_size` and `holdout_size` noise inputs (seeds `seed`, `seed + 1`), each
    capped at `random_count` when given.
    """
    pre = preprocess_from_onnx(model)
    total = count_source(source)
    if total is None:
        if random_count is not None:
            calib_size, holdout_size = min(calib_size, random_count), min(holdout_size, random_count)
        calib_x = load_images(source, pre, count=calib_size, seed=seed)
        held_x = load_images(source, pre, count=holdout_size, seed=seed + 1)
    else:
        split = split_indices(total, calib_size, holdout_size, seed)
        calib_x = load_images(source, pre, indices=split.calib)
        held_x = load_images(source, pre, indices=split.holdout)
    return LoadedSplit(pre, calib_x, held_x, total)
