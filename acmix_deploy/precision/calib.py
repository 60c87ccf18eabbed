"""Calibration / verification inputs: real images through the model's own preprocessing, or noise.

Sources: an ImageFolder-style directory (class subfolders of images, read with PIL), a .npy array
of uint8 NHWC RGB images, or "random". Preprocessing is the one of acmix_deploy.preprocess, read
from the ONNX metadata export writes (ImageNet defaults for what a bare file lacks): the pixels eval
and training's validation see for the same file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from acmix_deploy.errors import AcmixError
from acmix_deploy.preprocess import Preprocessing, list_images

RANDOM = "random"


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
    source: str | os.PathLike[str], pre: Preprocessing, indices: np.ndarray | list[int] | None = None,
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
        files = _image_files(path)
        chosen = [files[i] for i in (indices if indices is not None else range(min(count or len(files), len(files))))]
        out = []
        for f in chosen:
            try:
                out.append(pre.file(f))
            except OSError as exc:  # PIL's UnidentifiedImageError is an OSError
                raise AcmixError(f"cannot read image {f}: {exc}") from None
        return np.stack(out).astype(np.float32)
    arr = _load_npy(path)
    idx = np.asarray(indices if indices is not None else range(min(count or len(arr), len(arr))))
    return pre.uint8_batch(np.asarray(arr[np.sort(idx)]))


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
    pre: Preprocessing  # the model's preprocessing, applied to both sets
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
    pre = Preprocessing.from_onnx(model, defaults=True)  # ImageNet defaults for a file without metadata
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
