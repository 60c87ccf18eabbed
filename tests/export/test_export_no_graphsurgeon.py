"""Without onnx-graphsurgeon, `export` still writes verified ONNX with --no-optimize, and the
default (graph passes on) fails in one line before any work instead of an ImportError traceback."""

from __future__ import annotations

import sys

import pytest

from acmix_deploy.errors import AcmixError
from acmix_deploy.export import export_onnx


def test_optimize_without_graphsurgeon_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx_graphsurgeon", None)  # import raises ImportError
    with pytest.raises(AcmixError, match=r"need onnx-graphsurgeon .*--no-optimize") as info:
        export_onnx("resnet_acmix26", output=tmp_path / "m.onnx", optimize=True)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "m.onnx").exists()
