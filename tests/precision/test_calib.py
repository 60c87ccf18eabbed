"""Calibration data: preprocessing from ONNX metadata, image folders, .npy, disjoint splits."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from PIL import Image

from acmix_deploy.errors import AcmixError
from acmix_deploy.precision import calib
from acmix_deploy.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing


def _with_meta(tiny_onnx, **meta) -> onnx.ModelProto:
    m = onnx.load(tiny_onnx)
    keep = [p for p in m.metadata_props if p.key not in meta]
    del m.metadata_props[:]
    m.metadata_props.extend(keep)
    for k, v in meta.items():
        if v is not None:
            m.metadata_props.append(onnx.StringStringEntryProto(key=k, value=json.dumps(v)))
    return m


def test_preprocess_from_metadata_and_defaults(tiny_onnx):
    pre = Preprocessing.from_onnx(onnx.load(tiny_onnx), defaults=True)
    assert (pre.height, pre.width, pre.mean, pre.crop_ratio, pre.source) == (8, 8, (0.5, 0.5, 0.5), 1.0, "ONNX metadata")
    bare = _with_meta(tiny_onnx, mean=None, std=None, crop_ratio=None, input_size=None)
    d = Preprocessing.from_onnx(bare, defaults=True)
    # the static graph size (8) wins; the rest falls back to ImageNet defaults
    assert (d.height, d.mean, d.std, d.crop_ratio, d.source) == (8, IMAGENET_MEAN, IMAGENET_STD, 0.875,
                                                               "graph shape + ImageNet defaults")


def test_image_folder_resize_crop_normalise(tmp_path):
    pre = Preprocessing(4, 4, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), crop_ratio=0.5)
    for cls, color in (("cat", (255, 0, 0)), ("dog", (0, 128, 255))):
        (tmp_path / cls).mkdir()
        img = Image.new("RGB", (20, 10), color)
        img.paste((0, 0, 0), (0, 0, 2, 10))  # a black strip the center crop must cut away
        img.save(tmp_path / cls / "a.png")
    assert calib.count_source(tmp_path) == 2
    x = calib.load_images(tmp_path, pre, indices=[0, 1])
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32
    # shorter side 10 -> 4 / 0.5 = 8, width 16, center 4x4 crop: a uniform colour patch
    np.testing.assert_allclose(x[0, :, 0, 0], [(1 - 0.5) / 0.25, (0 - 0.5) / 0.25, (0 - 0.5) / 0.25], atol=1e-5)
    np.testing.assert_allclose(x[1, :, 2, 2], [-2.0, (128 / 255 - 0.5) / 0.25, 2.0], atol=1e-5)
    assert np.ptp(x[0], axis=(1, 2)).max() < 1e-6


def test_calibration_reads_the_files_training_and_eval_read(tmp_path):
    """Hidden files (macOS ._a.png) and hidden folders are skipped, as ImageFolder skips them."""
    from acmix_deploy.train.data import ImageFolder

    for rel in ("cat/a.png", "cat/._a.png", "dog/b.png", ".cache/c.png", "dog/.thumbs/d.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / rel, format="PNG")
    assert calib.count_source(tmp_path) == len(ImageFolder(tmp_path)) == 2


def test_npy_source_and_errors(tmp_path):
    pre = Preprocessing(8, 8, (0.0,) * 3, (1.0,) * 3, 1.0)
    arr = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "imgs.npy", arr)
    x = calib.load_images(tmp_path / "imgs.npy", pre, indices=[1, 4])
    np.testing.assert_allclose(x, arr[[1, 4]].transpose(0, 3, 1, 2) / 255.0, atol=1e-6)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AcmixError, match="holds no images"):
        calib.count_source(tmp_path / "empty")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(AcmixError, match="expected a folder of images"):
        calib.count_source(tmp_path / "a.txt")


def test_split_is_disjoint_and_keeps_a_holdout():
    s = calib.split_indices(100, 256, 128)
    assert len(s.holdout) == 25 and len(s.calib) == 75 and not set(s.calib) & set(s.holdout)
    s = calib.split_indices(1000, 256, 128)
    assert (len(s.calib), len(s.holdout)) == (256, 128) and not set(s.calib) & set(s.holdout)
    with pytest.raises(AcmixError):
        calib.split_indices(1, 1, 1)


def test_random_source_looks_like_images():
    pre = Preprocessing(8, 8)
    x = calib.load_images("random", pre, count=4, seed=1)
    lo = (0 - np.array(pre.mean)) / np.array(pre.std)
    hi = (1 - np.array(pre.mean)) / np.array(pre.std)
    assert x.shape == (4, 3, 8, 8)
    assert (x.min(axis=(0, 2, 3)) >= lo - 1e-5).all() and (x.max(axis=(0, 2, 3)) <= hi + 1e-5).all()
