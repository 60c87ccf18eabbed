"""Shared pieces of the reliability catalogue: small real artifacts made once per session, and
`check_promises`, the promises every command run in-process (tests.conftest.run_cli) must keep
(exit code, no traceback, one error line, inputs untouched, no temp left)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import CliRun

# A tiny ResNet (plain, no ACmix): every command accepts it and an export takes a few seconds.
TINY = dict(width=8, num_classes=10)
TINY_SIZE = 32


def sha256_tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every regular file under `root` (symlinks and pipes skipped)."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def temps(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(".tmp"))


def check_promises(outcome: CliRun, folder: Path, before: dict[str, str], code: int, needle: str | None) -> None:
    """The five promises of every catalogue case."""
    assert outcome.code == code, f"exit {outcome.code}, expected {code}:\n{outcome.text[-3000:]}"
    assert "Traceback" not in outcome.text, outcome.text[-3000:]
    if code != 0:
        lines = outcome.error_lines()
        assert len(lines) == 1, f"expected one error line, got {lines}:\n{outcome.err[-2000:]}"
        if needle is not None:
            assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"
    after = sha256_tree(folder)
    changed = [k for k, v in before.items() if after.get(k) != v]
    assert not changed, f"pre-existing files changed or removed: {changed}"
    assert not temps(folder), f"temp files left: {temps(folder)}"


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """tiny.onnx (dynamic batch, verified), tiny.pth (toolkit checkpoint), digits/ (8 px ImageFolder),
    and tiny.engine + sidecar when TensorRT-RTX can build here."""
    import torch

    from acmix_deploy.checkpoint import save_checkpoint
    from acmix_deploy.export import export_onnx
    from acmix_deploy.registry import create_model
    from acmix_deploy.train.digits import write_digits

    folder = tmp_path_factory.mktemp("reliability-artifacts")
    torch.manual_seed(0)
    model = create_model("resnet26", img_size=TINY_SIZE, **TINY)
    save_checkpoint(model, folder / "tiny.pth")
    export_onnx(None, checkpoint=folder / "tiny.pth", dynamic_batch=True, optimize=False,
                output=folder / "tiny.onnx")
    write_digits(folder / "digits", size=8)
    _image_folder(folder / "images")
    out = {"onnx": folder / "tiny.onnx", "ckpt": folder / "tiny.pth", "images": folder / "images"}
    try:
        from acmix_deploy.trt.build import build_engine

        build_engine(folder / "tiny.onnx", folder / "tiny.engine", min_batch=1, opt_batch=1, max_batch=2,
                     runtime="tensorrt-rtx", progress=False, record=False)
        out["engine"] = folder / "tiny.engine"
    except Exception:  # noqa: BLE001 - no TensorRT-RTX here: the engine cases skip
        pass
    return out


def _image_folder(root: Path) -> None:
    """train/<class>/ and val/<class>/ with two 8x8 PNGs for each of the 10 classes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(10):
            (root / split / str(c)).mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / str(c) / f"{i}.png")


@pytest.fixture(scope="session")
def digits(artifacts) -> Path:
    """A dataset written by `data digits` (only the cases that replace one copy it)."""
    return artifacts["onnx"].parent / "digits"


@pytest.fixture
def case_dir(tmp_path, monkeypatch, artifacts) -> Path:
    """A fresh folder (also the cwd) holding copies of the session artifacts."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ACMIX_DEPLOY_WORKSPACE", raising=False)
    for key, src in artifacts.items():
        if src.is_dir():
            shutil.copytree(src, tmp_path / src.name)
        else:
            shutil.copy2(src, tmp_path / src.name)
            if key == "engine":
                shutil.copy2(str(src) + ".json", str(tmp_path / src.name) + ".json")
    return tmp_path


def has_engine(artifacts: dict[str, Path]) -> bool:
    return "engine" in artifacts


def mkfifo(path: Path) -> Path:
    os.mkfifo(path)
    return path
