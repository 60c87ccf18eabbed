"""acmix_deploy.onnxio: one wording for bad ONNX files, metadata round trips, external data."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from acmix_deploy import onnxio
from acmix_deploy.errors import AcmixError

WEIGHT = np.arange(12, dtype=np.float32).reshape(4, 3)


def _model() -> onnx.ModelProto:
    """x (1, 4) @ w (4, 3) -> y: a real, checkable graph of a few hundred bytes."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc/MatMul_0")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(WEIGHT, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_bad_files_get_one_line_each(tmp_path):
    good = onnxio.save_model(_model(), tmp_path / "good.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.onnx"
    text.write_text("this is no protobuf\n" * 4)
    (tmp_path / "empty.onnx").write_bytes(b"")
    expected = {
        tmp_path / "missing.onnx": f"ONNX file {tmp_path / 'missing.onnx'} does not exist",
        tmp_path / "empty.onnx": f"ONNX file {tmp_path / 'empty.onnx'} is empty",
        tmp_path: f"ONNX file {tmp_path} is a folder, not a file",
        truncated: f"{truncated} is not an ONNX model (",
        text: f"{text} is not an ONNX model (",
    }
    for path, message in expected.items():
        with pytest.raises(AcmixError) as info:
            onnxio.load_model(path)
        assert str(info.value).startswith(message) and "\n" not in str(info.value), str(info.value)


def test_metadata_round_trip_and_atomic_mode(tmp_path):
    model = _model()
    values = {"model": "resnet_acmix26", "input_size": [3, 64, 64], "mean": [0.485, 0.456, 0.406], "crop_ratio": 0.875}
    onnxio.set_metadata(model, values)
    onnxio.set_metadata(model, {"crop_ratio": 1.0})  # replaces, does not duplicate
    old = os.umask(0o022)
    try:
        path = onnxio.save_model(model, tmp_path / "m.onnx")
    finally:
        os.umask(old)
    loaded = onnxio.load_model(path)
    assert onnxio.metadata_values(loaded) == {**values, "crop_ratio": 1.0}
    assert len(loaded.metadata_props) == 4 and onnxio.model_name(loaded, path) == "resnet_acmix26"
    assert onnxio.input_info(loaded) == ("x", [1, 4])
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), WEIGHT)
    assert path.stat().st_mode & 0o777 == 0o644 and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_external_data_is_read_and_sized(tmp_path):
    model = _model()
    onnx.save_model(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.bin", size_threshold=0)
    path = tmp_path / "ext.onnx"
    refs = onnxio.load_model(path, load_external_data=False)
    assert onnxio.external_files(refs) == {"ext.bin"}
    assert onnxio.size_on_disk(path, refs) == path.stat().st_size + WEIGHT.nbytes
    full = onnxio.load_model(path)
    assert onnxio.external_files(full) == set()
    np.testing.assert_array_equal(numpy_helper.to_array(full.graph.initializer[0]), WEIGHT)
    (tmp_path / "ext.bin").unlink()
    with pytest.raises(AcmixError, match=r"ext\.onnx: cannot read its external data \("):
        onnxio.load_model(path)
