"""ImageFolder-style datasets and the two image pipelines (train / eval), with PIL and numpy only.

torchvision is not a dependency, so the few pieces needed live here:
* `EvalOnly`: acmix_deploy.preprocess's one eval pipeline as a dataset transform (int8 calibration
  and `acmix-deploy eval` apply the same one, so all three see the same pixels for the same file);
* `TrainTransform`: random resized crop on a float box (small images such as 8x8 digits are cut at
  sub-pixel positions instead of whole pixels), optional horizontal flip, normalize;
* `ImageFolder`: class subfolders of images; a corrupt file yields `None` instead of raising, so the
  caller decides (skip and count, or stop) and always knows which file it was; for training it can
  instead be replaced by the next readable image (full batches keep torchrun processes in step).

Randomness of the train pipeline comes from a generator seeded with (seed, epoch, index), not from
global state, so a run gives the same pixels for any number of loader workers or processes and a
resumed run continues exactly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from acmix_deploy.errors import AcmixError, first_line
from acmix_deploy.preprocess import IMAGE_SUFFIXES, Preprocessing, decode, list_images, normalize, resample_filter


@dataclass(frozen=True)
class TrainTransform:
    """Random resized crop (area fraction `scale`, aspect `ratio`) on a float box, flip, normalize."""

    pre: Preprocessing
    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True

    def crop_box(self, width: int, height: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
        area = width * height
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(log_lo, log_hi))
            cw, ch = math.sqrt(target * aspect), math.sqrt(target / aspect)
            if cw <= width and ch <= height:
                x0, y0 = rng.uniform(0, width - cw), rng.uniform(0, height - ch)
                return (x0, y0, x0 + cw, y0 + ch)
        side = min(width, height)  # fallback: the central square
        x0, y0 = (width - side) / 2, (height - side) / 2
        return (x0, y0, x0 + side, y0 + side)

    def __call__(self, image: Any, rng: np.random.Generator) -> np.ndarray:
        from PIL import Image

        box = self.crop_box(*image.size, rng)
        size = self.pre.input_size
        out = image.resize((size, size), resample_filter(self.pre.interpolation), box=box)
        if self.hflip and rng.random() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return normalize(out, self.pre.mean, self.pre.std)


# -- folders ----------------------------------------------------------------------------------------
def find_classes(root: Path) -> list[str]:
    """Class names = the sorted names of the subfolders of `root` (the order every output follows)."""
    if not root.is_dir():
        raise AcmixError(f"{root} is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise AcmixError(f"{root} has no class subfolders (expected {root}/<class>/<image>.png ...)")
    return classes


def split_dir(data: str | os.PathLike[str], split: str) -> Path:
    """DIR/<split>; for "val" also DIR itself when it holds class folders (and no train/ folder)."""
    root = Path(data)
    if not root.is_dir():
        raise AcmixError(f"data folder {root} does not exist")
    sub = root / split
    if sub.is_dir():
        return sub
    if split == "val" and not (root / "train").is_dir():
        return root
    raise AcmixError(f"{root} has no {split}/ folder (expected {root}/train/<class>/... and {root}/val/<class>/...)")


class ImageFolder(Dataset):
    """root/<class>/<image>; labels index the sorted class names. Items: (array | None, label, index)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Callable[[Any, int], Any] | None = None,
        classes: Sequence[str] | None = None,
        substitute_corrupt: bool = False,
    ):
        self.root = Path(root)
        found = find_classes(self.root)
        if classes is not None and list(classes) != found:
            raise AcmixError(
                f"{self.root} has classes {_preview(found)}, expected {_preview(list(classes))} "
                "(class folders must match)"
            )
        self.classes = found
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(found):
            files = list_images(self.root / name)
            self.samples += [(p, label) for p in files]
        if not self.samples:
            raise AcmixError(f"{self.root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.transform = transform  # (PIL RGB image, index) -> output
        # Training keeps batches full (and processes in step) by taking the next readable image.
        self.substitute_corrupt = substitute_corrupt

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> np.ndarray:
        return np.asarray([label for _, label in self.samples], dtype=np.int64)

    def load(self, index: int) -> tuple[Any | None, str]:
        """The decoded RGB image, or (None, reason) for an unreadable file."""
        from PIL import Image

        path = self.samples[index][0]
        try:
            return decode(path), ""
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            return None, first_line(exc)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[Any, int, int, list[int]]:
        """(transformed image or None, label, index, indices of corrupt files met on the way)."""
        index = item[1] if isinstance(item, tuple) else item
        bad: list[int] = []
        image, _ = self.load(index)
        while image is None:
            bad.append(index)
            if not self.substitute_corrupt or len(bad) >= len(self.samples):
                return None, self.samples[bad[0]][1], bad[0], bad
            index = (index + 1) % len(self.samples)
            image, _ = self.load(index)
        if isinstance(item, tuple):
            item = (item[0], index)
        else:
            item = index
        out = self.transform(image, item) if self.transform is not None else image
        return out, self.samples[index][1], index, bad


def _preview(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}] ({len(names)})"


class SeededTrain:
    """Train transform with a per-(seed, epoch, index) generator; the sampler passes (epoch, index)."""

    def __init__(self, transform: TrainTransform, seed: int):
        self.transform, self.seed = transform, seed

    def __call__(self, image: Any, item: int | tuple[int, int]) -> np.ndarray:
        epoch, index = item if isinstance(item, tuple) else (0, item)
        rng = np.random.default_rng([self.seed, epoch, index])
        return self.transform(image, rng)


class EvalOnly:
    """The eval pipeline as a dataset transform (ignores the index)."""

    def __init__(self, pre: Preprocessing):
        self.pre = pre

    def __call__(self, image: Any, item: Any) -> np.ndarray:
        return self.pre(image)


@dataclass
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    corrupt: list[int]  # dataset indices whose file could not be decoded (not in the batch)


def collate(items: list[tuple[Any, int, int, list[int]]]) -> Batch:
    good = [it for it in items if it[0] is not None]
    corrupt = sorted({i for it in items for i in it[3]})
    images = torch.from_numpy(np.stack([it[0] for it in good])) if good else torch.empty(0)
    labels = torch.tensor([it[1] for it in good], dtype=torch.long)
    return Batch(images, labels, corrupt)


class EpochSampler(Sampler):
    """This process's shuffled share of the data for one epoch, as (epoch, index) pairs.

    Same permutation rule as DistributedSampler (seed + epoch, padded to a multiple of the world
    size), so the order depends only on (seed, epoch, rank, world size).
    """

    def __init__(self, size: int, rank: int = 0, world: int = 1, seed: int = 0, shuffle: bool = True):
        self.size, self.rank, self.world, self.seed, self.shuffle = size, rank, world, seed, shuffle
        self.epoch = 0
        self.per_rank = math.ceil(size / world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = self.per_rank * self.world
        order += order[: total - len(order)]
        return iter([(self.epoch, i) for i in order[self.rank : total : self.world]])

    def __len__(self) -> int:
        return self.per_rank


class ShardSampler(Sampler):
    """Every `world`-th index from `rank`, no padding: each image is evaluated exactly once."""

    def __init__(self, size: int, rank: int = 0, world: int = 1):
        self.indices = list(range(rank, size, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
