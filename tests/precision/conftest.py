"""Session fixtures: one trained tiny ACmix-like model on scikit-learn digits (shared with tests/trt)."""

from __future__ import annotations

import pytest

from tests.tiny_onnx_models import TrainedDigits, cached_trained


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> TrainedDigits:
    return cached_trained(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_onnx(trained):
    """The tiny ACmix-like export (8x8 input, dynamic batch, export-style metadata)."""
    return trained.onnx_path


@pytest.fixture()
def artifacts(tmp_path, monkeypatch):
    ws = tmp_path / "artifacts"
    monkeypatch.setenv("ACMIX_DEPLOY_WORKSPACE", str(ws))
    return ws
