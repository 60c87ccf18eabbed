"""SAN trains on digits at full depth with its card's learning rate (the toolkit's 0.1 diverges)."""

from __future__ import annotations

import math

from tests.train.conftest import _silent

# The documented digits override: 3x3 kernels in every stage at 64 px; full depth [2, 1, 2, 4, 1].
SAN_DIGITS = {"width": 32, "kernels": [3, 3, 3, 3, 3]}


def test_san_default_lr_comes_from_its_card_and_an_explicit_lr_wins(small_digits, tmp_path):
    from acmix_deploy.registry import get_card
    from acmix_deploy.train.config import DEFAULT_LR
    from acmix_deploy.train.loop import prepare

    options = {"model": "san_acmix10", "data": str(small_digits), "out": str(tmp_path / "a"), "overrides": SAN_DIGITS}
    config, _ = prepare(options)
    assert get_card("san_acmix10").default_lr("sgd") == 0.01
    assert config.lr == 0.01 and DEFAULT_LR["sgd"] == 0.1
    assert prepare({**options, "opt": "adamw"})[0].lr == DEFAULT_LR["adamw"]  # the card sets sgd only
    assert prepare({**options, "lr": 0.05})[0].lr == 0.05
    assert prepare({**options, "model": "pvt_acmix_t", "overrides": {}})[0].lr == DEFAULT_LR["sgd"]


def test_san_acmix10_full_depth_trains_finite_on_digits(small_digits, tmp_path):
    """A few SGD steps without warm-up at the card's lr: train losses and eval-mode val loss finite."""
    from acmix_deploy.train.loop import prepare, train

    config, _ = prepare({
        "model": "san_acmix10", "data": str(small_digits), "out": str(tmp_path / "run"), "img_size": 64,
        "batch_size": 16, "epochs": 1, "warmup_epochs": 0, "workers": 0, "hflip": False, "threads": 1,
        "overrides": SAN_DIGITS,
    })
    result = train(config, show_progress=False, console=_silent())
    assert config.lr == 0.01
    assert len(result.step_losses) == 5 and all(math.isfinite(v) for v in result.step_losses)
    (row,) = result.history
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])
    assert row["val_loss"] < 5.0  # 10 classes: a model that blew up in eval mode lands far above ln 10
