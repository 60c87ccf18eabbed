"""`data digits`: the fixed stratified split, per-class counts, pixel values, the .npy, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from acmix_deploy.errors import AcmixError
from acmix_deploy.train.digits import split_indices, write_digits


def test_split_is_stratified_80_20_and_fixed(digits_dir):
    from sklearn.datasets import load_digits

    labels = load_digits().target
    train, val = split_indices(labels)
    assert (len(train), len(val)) == (1437, 360)
    assert not set(train) & set(val)
    per_class = np.bincount(labels, minlength=10)
    val_counts = np.bincount(labels[val], minlength=10)
    # stratified: every class keeps 20% of its images in val, up to rounding
    assert np.all(np.abs(val_counts - 0.2 * per_class) < 1.0)
    assert val_counts.tolist() == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]
    again = split_indices(labels)
    assert np.array_equal(again[1], val)  # seed 0: the same split every time
    # the written folders hold exactly these images, named by their index in load_digits()
    for split, idx in (("train", train), ("val", val)):
        for digit in range(10):
            names = sorted(p.name for p in (digits_dir / split / str(digit)).iterdir())
            expected = sorted(f"{i:04d}.png" for i in idx[labels[idx] == digit])
            assert names == expected


def test_pixels_scaled_to_0_255_and_npy(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    written = write_digits(tmp_path / "d8", size=8, npy=tmp_path / "calib.npy")
    assert written.totals == {"train": 1437, "val": 360}
    (path,) = (tmp_path / "d8").glob(f"*/{digits.target[0]}/0000.png")
    img = np.asarray(Image.open(path))
    assert img.shape == (8, 8, 3) and img.dtype == np.uint8
    expected = np.rint(digits.images[0] * 255 / 16).astype(np.uint8)
    assert np.array_equal(img[..., 0], expected) and np.array_equal(img[..., 1], expected)
    arr = np.load(tmp_path / "calib.npy")
    assert arr.shape == (1437, 8, 8, 3) and arr.dtype == np.uint8
    assert arr.max() == 255 and arr.min() == 0
    train, _ = split_indices(digits.target)
    assert np.array_equal(arr[5, ..., 2], np.rint(digits.images[train[5]] * 255 / 16).astype(np.uint8))


def test_upscaled_size_and_refuses_to_overwrite(digits_dir, tmp_path):
    img = Image.open(next((digits_dir / "train" / "3").iterdir()))
    assert img.size == (16, 16) and img.mode == "RGB"
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    with pytest.raises(AcmixError, match="not empty"):
        write_digits(tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").exists()
    with pytest.raises(AcmixError, match=".npy"):
        write_digits(tmp_path / "new", npy=tmp_path / "calib.bin")
    assert not (tmp_path / "new").exists()  # nothing half-written


def test_digits_data_does_not_import_torch():
    """`acmix-deploy data digits` needs numpy and PIL only: the train package resolves names lazily."""
    import subprocess
    import sys

    code = "import sys, acmix_deploy.train.digits, acmix_deploy.train as t; t.write_digits; "
    code += "assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
