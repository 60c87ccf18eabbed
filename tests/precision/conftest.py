"""Session fixtures of the precision tests (`trained` and `artifacts` live in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_onnx(trained):
    """The tiny ACmix-like export (8x8 input, dynamic batch, export-style metadata)."""
    return trained.onnx_path
