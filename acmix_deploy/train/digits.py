"""scikit-learn's bundled digits (1,797 real 8x8 handwritten digits, no download) as an ImageFolder.

Layout: DIR/train/<digit>/<index>.png and DIR/val/<digit>/<index>.png, where <index> is the sample's
position in `sklearn.datasets.load_digits()`. The split is fixed: stratified 80/20 with seed 0
(1,437 train / 360 val). Pixels 0..16 become 0..255 (x * 255 / 16, rounded), grayscale is stored
as RGB, and images are upscaled from 8x8 to `size` (default 32, bilinear: smooth strokes like a
real small photo; `--size 8` keeps the originals). The folder appears complete or not at all.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acmix_deploy.errors import AcmixError
from acmix_deploy.imaging import resample_filter
from acmix_deploy.fileio import atomic_path, ensure_writable_dir

SPLIT_SEED = 0
VAL_FRACTION = 0.2
RESAMPLE = ("bilinear", "nearest", "bicubic")


@dataclass
class DigitsWritten:
    root: Path
    size: int
    counts: dict[str, dict[str, int]]  # split -> class -> images
    npy: Path | None = None
    npy_shape: tuple[int, ...] | None = None

    @property
    def totals(self) -> dict[str, int]:
        return {split: sum(c.values()) for split, c in self.counts.items()}


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise AcmixError("scikit-learn is needed for the digits data: pip install 'acmix-deploy[data]'") from None
    digits = load_digits()
    return digits.images, digits.target.astype(np.int64)


def split_indices(labels: np.ndarray, val_fraction: float = VAL_FRACTION, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train / val indices (each sorted)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    train, val = train_test_split(idx, test_size=val_fraction, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(val)


def digit_images(size: int = 32, resample: str = "bilinear") -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 (N, size, size, 3) RGB, and their labels."""
    from PIL import Image

    if size < 8:
        raise AcmixError(f"--size must be >= 8 (the digits are 8x8), got {size}")
    if resample not in RESAMPLE:
        raise AcmixError(f"unknown resampling {resample!r}; use one of {', '.join(RESAMPLE)}")
    images, labels = _load_digits()
    gray = np.clip(np.rint(images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    mode = resample_filter(resample)
    out = np.empty((len(gray), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(gray):
        pil = Image.fromarray(img, mode="L")
        if size != 8:
            pil = pil.resize((size, size), mode)
        out[i] = np.asarray(pil.convert("RGB"))
    return out, labels


def write_digits(
    root: str | os.PathLike[str],
    size: int = 32,
    resample: str = "bilinear",
    npy: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> DigitsWritten:
    """Write the ImageFolder (and optionally the train split as a uint8 NHWC .npy for calibration)."""
    from PIL import Image

    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())) and not force:
        raise AcmixError(f"{root} exists and is not empty; pass --force to replace it")
    if npy is not None and Path(npy).suffix.lower() != ".npy":
        raise AcmixError(f"{npy}: the calibration array must be a .npy file")
    images, labels = digit_images(size, resample)
    train, val = split_indices(labels)
    ensure_writable_dir(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    counts: dict[str, dict[str, int]] = {}
    try:
        for split, idx in (("train", train), ("val", val)):
            counts[split] = {}
            for digit in range(10):
                folder = tmp / split / str(digit)
                folder.mkdir(parents=True)
                chosen = idx[labels[idx] == digit]
                for i in chosen:
                    Image.fromarray(images[i]).save(folder / f"{i:04d}.png")
                counts[split][str(digit)] = int(len(chosen))
        if root.exists():
            shutil.rmtree(root) if root.is_dir() else root.unlink()
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    result = DigitsWritten(root=root, size=size, counts=counts)
    if npy is not None:
        result.npy, result.npy_shape = write_npy(npy, images[train]), tuple(images[train].shape)
    return result


def write_npy(path: str | os.PathLike[str], images: np.ndarray) -> Path:
    """uint8 (N, H, W, 3) RGB array, written atomically."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise AcmixError(f"{path}: the calibration array must be a .npy file")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(images, dtype=np.uint8), allow_pickle=False)
    return path
