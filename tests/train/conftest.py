"""Shared data and runs for the train / eval tests (tiny models, small images: CI runs on 2 cores)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

# Tiny ResNet-ACmix: width 8, k_att 3 (minimum input 17 px), 20 px inputs.
TINY = {"width": 8, "k_att": 3}
TINY_SIZE = 20


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """The full digits ImageFolder (1,437 train / 360 val) at 16x16 px."""
    from acmix_deploy.train.digits import write_digits

    root = tmp_path_factory.mktemp("digits") / "digits"
    write_digits(root, size=16)
    return root


@pytest.fixture(scope="session")
def small_digits(digits_dir, tmp_path_factory) -> Path:
    """10 classes x 8 train / 3 val images: for runs that only need to be exact, not good."""
    root = tmp_path_factory.mktemp("small") / "digits"
    for split, keep in (("train", 8), ("val", 3)):
        for folder in sorted((digits_dir / split).iterdir()):
            dest = root / split / folder.name
            dest.mkdir(parents=True)
            for f in sorted(folder.iterdir())[:keep]:
                shutil.copy(f, dest / f.name)
    return root


def tiny_options(data: Path, out: Path, **extra) -> dict:
    options = {
        "model": "resnet_acmix26", "data": str(data), "out": str(out), "img_size": TINY_SIZE,
        "batch_size": 16, "epochs": 2, "workers": 0, "hflip": False, "threads": 1, "overrides": dict(TINY),
    }
    options.update(extra)
    return options


@pytest.fixture(scope="session")
def trained_run(digits_dir, tmp_path_factory):
    """A tiny model trained 3 epochs on all digits; reused by the eval tests."""
    from acmix_deploy.train.loop import prepare, train

    out = tmp_path_factory.mktemp("run") / "run"
    config, _ = prepare(tiny_options(digits_dir, out, epochs=3, batch_size=32, lr=0.2))
    result = train(config, show_progress=False, console=_silent())
    return out, result


def _silent():
    from rich.console import Console

    return Console(quiet=True)
