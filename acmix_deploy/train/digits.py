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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acmix_deploy.errors import AcmixError
from acmix_deploy.preprocess import resample_filter
from acmix_deploy.fileio import atomic_path

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


MARKER = ".acmix-deploy-digits"  # written last: a folder holding it (and nothing foreign) is ours
_SPLITS = ("train", "val")


def _refuse_dangerous(root: Path) -> None:
    """Never replace /, the home folder, the current folder or a folder that contains it."""
    resolved, cwd = root.resolve(), Path.cwd().resolve()
    home = Path.home().resolve()
    if resolved == Path(resolved.anchor) or resolved == home or resolved == cwd or resolved in cwd.parents:
        raise AcmixError(f"refusing to replace {root} (resolves to {resolved}): it is /, the home folder or "
                         "holds the current folder; give a new folder name")


def is_digits_dataset(root: Path) -> bool:
    """True for a folder this command wrote: its marker, train/ and val/ with digit folders of PNGs,
    and nothing else (so --force can never remove a user's files)."""
    if not root.is_dir() or root.is_symlink() or not (root / MARKER).is_file():
        return False
    if not set(os.listdir(root)) <= {*_SPLITS, MARKER}:
        return False
    for split in _SPLITS:
        folder = root / split
        if not folder.exists():
            continue
        if folder.is_symlink() or not folder.is_dir():
            return False
        for digit in folder.iterdir():
            if digit.name not in {str(d) for d in range(10)} or digit.is_symlink() or not digit.is_dir():
                return False
            if any(f.suffix != ".png" or f.is_symlink() or not f.is_file() for f in digit.iterdir()):
                return False
    return True


def _check_target(root: Path, npy: Path | None, size: int, force: bool) -> None:
    """Everything that can be refused, before a single image is made."""
    from acmix_deploy import validate
    from acmix_deploy.fileio import check_collisions, check_destination

    if size < 8:
        raise AcmixError(f"--size must be >= 8 (the digits are 8x8), got {size}")
    have = validate.physical_memory()
    if have is not None and 1797 * size * size * 3 * 2 > have:
        raise AcmixError(f"--size {size} needs more memory than this machine has; choose a smaller size")
    _refuse_dangerous(root)
    occupied = root.exists() or root.is_symlink()
    if occupied and (not root.is_dir() or any(root.iterdir())):
        if not force:
            raise AcmixError(f"{root} exists and is not empty; pass --force to replace it")
        if not is_digits_dataset(root):
            raise AcmixError(f"--force only replaces a dataset written by `acmix-deploy data digits` "
                             f"(marker {MARKER}, nothing else inside); {root} is not one, left as it is")
    if npy is not None:
        if npy.suffix.lower() != ".npy":
            raise AcmixError(f"{npy}: the calibration array must be a .npy file")
        if root.resolve() in npy.resolve().parents:
            raise AcmixError(f"--npy {npy} is inside the dataset folder {root}; write it elsewhere")
        check_destination(npy, "--npy")
        check_collisions({}, {"DIR": root, "--npy": npy})


def write_digits(
    root: str | os.PathLike[str],
    size: int = 32,
    resample: str = "bilinear",
    npy: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> DigitsWritten:
    """Write the ImageFolder (and optionally the train split as a uint8 NHWC .npy for calibration).
    The folder appears complete or not at all; --force replaces only a dataset this command wrote."""
    from PIL import Image

    from acmix_deploy.fileio import atomic_dir, temp_path

    root = Path(root)
    _check_target(root, Path(npy) if npy is not None else None, size, force)
    images, labels = digit_images(size, resample)
    train, val = split_indices(labels)
    target = root.resolve()  # `.`-like names have no usable parent otherwise
    counts: dict[str, dict[str, int]] = {}
    old: Path | None = None
    with atomic_dir(target) as tmp:
        for split, idx in (("train", train), ("val", val)):
            counts[split] = {}
            for digit in range(10):
                folder = tmp / split / str(digit)
                folder.mkdir(parents=True)
                chosen = idx[labels[idx] == digit]
                for i in chosen:
                    Image.fromarray(images[i]).save(folder / f"{i:04d}.png")
                counts[split][str(digit)] = int(len(chosen))
        (tmp / MARKER).write_text("written by acmix-deploy data digits\n")  # last: marks a complete dataset
        if target.exists() and is_digits_dataset(target):
            old = temp_path(target)  # moved aside, removed once the new one is in place (a crash
            os.replace(target, old)  # leaves a dead writer's temp, which the next run removes)
        elif target.is_dir() and not any(target.iterdir()):
            target.rmdir()
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
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
