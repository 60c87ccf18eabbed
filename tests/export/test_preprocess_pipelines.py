"""One preprocessing path: int8 calibration, `acmix-deploy eval` and training's validation turn the same
image into the same tensor for the same model (acmix_deploy.preprocess)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import small_overrides

NAME = "resnet_acmix26"


def test_calibration_eval_and_training_eval_give_identical_tensors(small_export, tmp_path):
    pytest.importorskip("sklearn")
    from PIL import Image

    from acmix_deploy import evaluate
    from acmix_deploy.onnxio import load_model
    from acmix_deploy.precision import calib
    from acmix_deploy.preprocess import Preprocessing, list_images
    from acmix_deploy.registry import create_model
    from acmix_deploy.train.data import EvalOnly, ImageFolder
    from acmix_deploy.train.digits import digit_images

    onnx_path = small_export(NAME).path
    images, labels = digit_images(size=20)  # the real digits `acmix-deploy data digits` writes, at 20 px
    root = tmp_path / "val"
    for i in (0, 1, 2, 10, 11):  # PNG files in class folders, as the CLI writes them
        (root / str(labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(root / str(labels[i]) / f"{i:04d}.png")
    picks = [0, 2, 3, 4]
    card_pre = Preprocessing.from_card(create_model(NAME, **small_overrides(NAME)).card)  # training's source

    calib_pre = Preprocessing.from_onnx(load_model(onnx_path), defaults=True)
    calibration = calib.load_images(root, calib_pre, indices=picks)
    runner = evaluate.open_artifact(onnx_path)  # eval: the ONNX metadata, through its dataset transform
    eval_ds = ImageFolder(root, evaluate._MultiPre([runner.pre]))
    evaluation = np.stack([eval_ds[i][0][0] for i in picks])
    train_ds = ImageFolder(root, EvalOnly(card_pre))  # training's validation transform
    training = np.stack([train_ds[i][0] for i in picks])

    assert [p for p, _ in eval_ds.samples] == list_images(root)  # the same files in the same order
    assert calib_pre == runner.pre == card_pre  # one description, whatever it was read from
    assert (card_pre.height, card_pre.crop_ratio) == (64, 0.875)  # 20 px digits: resized to 73, cropped to 64
    assert calibration.shape == (4, 3, 64, 64) and calibration.dtype == np.float32
    np.testing.assert_array_equal(calibration, evaluation)
    np.testing.assert_array_equal(calibration, training)
    assert float(calibration.std()) > 0.5  # real digits, not a constant image
