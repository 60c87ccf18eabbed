"""`eval`: checkpoint vs its ONNX on the digits val set, metadata rules, corrupt images, class checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from acmix_deploy.errors import AcmixError
from acmix_deploy.evaluate import evaluate
from acmix_deploy.runners import run_chunked

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def export_with_metadata(checkpoint: Path, dest: Path) -> Path:
    """The checkpoint through the project's own export (static batch 1, its metadata_props), so eval
    reads exactly what `acmix-deploy export` writes."""
    from acmix_deploy.export import export_onnx

    return export_onnx(None, checkpoint=checkpoint, output=dest, verify=False, optimize=False).path


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> tuple[Path, Path, Path]:
    out, _ = trained_run
    folder = tmp_path_factory.mktemp("onnx")
    with_meta = export_with_metadata(out / "best.pth", folder / "model.onnx")
    bare = folder / "bare.onnx"
    import onnx

    proto = onnx.load(str(with_meta))
    del proto.metadata_props[:]
    onnx.save(proto, str(bare))
    return out / "best.pth", with_meta, bare


def test_checkpoint_and_its_onnx_agree_on_every_val_image(exported, digits_dir, trained_run):
    ckpt, onnx_path, _ = exported
    report = evaluate([ckpt, onnx_path], digits_dir, batch_size=50)
    torch_res, onnx_res = report.results
    assert report.total == report.evaluated == 360 and not report.skipped
    assert torch_res.kind == "pytorch" and onnx_res.kind == "onnx"
    assert report.agreement(onnx_res) == 360
    assert onnx_res.correct1 == torch_res.correct1 and onnx_res.correct5 == torch_res.correct5
    # the same number the training loop measured on the same images
    assert report.top1(torch_res) == pytest.approx(trained_run[1].best_top1)
    d = report.to_dict()
    assert d["artifacts"][1]["top1_agreement"] == 1.0 and d["artifacts"][1]["delta_correct1"] == 0


def test_onnx_without_metadata_needs_options(exported, small_digits):
    ckpt, with_meta, bare = exported
    with pytest.raises(AcmixError, match="lacks preprocessing metadata .*--img-size"):
        evaluate([bare], small_digits)
    fallback = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "crop_ratio": 0.875}
    # the static graph supplies the size; interpolation defaults to bilinear
    report = evaluate([with_meta, bare], small_digits, fallback=fallback)
    assert report.agreement(report.results[1]) == report.evaluated == 30
    with pytest.raises(AcmixError, match="takes 20x20 images"):
        evaluate([bare], small_digits, fallback={**fallback, "input_size": 24})


def _corrupt_copy(src: Path, dest: Path) -> tuple[Path, Path]:
    shutil.copytree(src, dest)
    good = next((dest / "val" / "2").iterdir())
    truncated = dest / "val" / "2" / "a_truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    text = dest / "val" / "7" / "b_text.png"
    text.write_text("not an image")
    return truncated, text


def test_corrupt_images_are_skipped_and_counted_or_stop(exported, small_digits, tmp_path):
    ckpt, onnx_path, _ = exported
    truncated, text = _corrupt_copy(small_digits, tmp_path / "data")
    report = evaluate([ckpt, onnx_path], tmp_path / "data", batch_size=4)
    assert report.total == 32 and report.evaluated == 30
    assert sorted(f for f, _ in report.skipped) == sorted([str(truncated), str(text)])
    clean = evaluate([ckpt], small_digits)
    assert report.results[0].correct1 == clean.results[0].correct1  # the same 30 images counted
    assert len(report.results[1].top1_pred) == 30
    with pytest.raises(AcmixError, match="corrupt image .*a_truncated.png"):
        evaluate([ckpt], tmp_path / "data", on_corrupt="stop")


def test_cli_eval_one_line_errors_and_table(exported, small_digits, tmp_path, capsys):
    from acmix_deploy.cli import main

    ckpt, onnx_path, _ = exported
    _corrupt_copy(small_digits, tmp_path / "data")
    fake_engine = tmp_path / "model.engine"
    fake_engine.write_bytes(b"not an engine")
    with pytest.raises(SystemExit) as stop:
        main(["eval", "--data", str(tmp_path / "data"), "--on-corrupt", "stop", str(ckpt)])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: corrupt image") and "\n" not in err

    with pytest.raises(SystemExit) as done:
        main(["eval", "--data", str(tmp_path / "data"), str(ckpt), str(onnx_path), str(fake_engine),
              "-o", str(tmp_path / "r.json")])
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    assert "skipped 2 corrupt image(s)" in out and "unavailable" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["evaluated"] == 30 and len(data["skipped"]) == 2
    assert data["artifacts"][1]["agree"] == 30 and data["artifacts"][2]["available"] is False


def test_class_count_must_match(exported, small_digits, tmp_path):
    ckpt, onnx_path, _ = exported
    shutil.copytree(small_digits / "val", tmp_path / "nine")
    shutil.rmtree(tmp_path / "nine" / "9")
    with pytest.raises(AcmixError, match="10 classes but .* has 9"):
        evaluate([onnx_path], tmp_path / "nine")
    with pytest.raises(AcmixError, match="10 classes but .* has 9"):
        evaluate([ckpt], tmp_path / "nine")
    # ten folders again, but one renamed: the checkpoint's class names are checked too
    shutil.copytree(small_digits / "val" / "9", tmp_path / "nine" / "x9")
    with pytest.raises(AcmixError, match="differ from the folders"):
        evaluate([ckpt], tmp_path / "nine")


def test_fixed_batch_padding():
    calls = []

    def fn(chunk):
        calls.append(len(chunk))
        return chunk.reshape(len(chunk), -1)[:, :2] * 2

    x = np.arange(5 * 3 * 2 * 2, dtype=np.float32).reshape(5, 3, 2, 2)
    out = run_chunked(fn, x, 2, 2)
    assert calls == [2, 2, 2] and out.shape == (5, 2)
    assert np.array_equal(out, x.reshape(5, -1)[:, :2] * 2)


def test_batch_limits_pad_only_below_the_minimum():
    calls = []

    def fn(chunk):
        calls.append(len(chunk))
        return chunk[:, :1, 0, 0]

    x = np.arange(7, dtype=np.float32).reshape(7, 1, 1, 1)
    out = run_chunked(fn, x, 4, 2)
    assert calls == [4, 3] and out[:, 0].tolist() == list(range(7))
    calls.clear()
    run_chunked(fn, x[:5], 4, 2)
    assert calls == [4, 2]  # the single leftover image is padded to the engine's minimum batch


def _linear_onnx(path: Path, weight: np.ndarray, size: int, fp16_io: bool) -> Path:
    """A hand-built classifier with a dynamic batch: mean over pixels, then (3 -> 10) MatMul."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dtype = TensorProto.FLOAT16 if fp16_io else TensorProto.FLOAT
    nodes = [helper.make_node("Cast", ["images"], ["x32"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["x32", "axes"], ["pooled"], keepdims=0),
             helper.make_node("MatMul", ["pooled", "w"], ["logits"])]
    graph = helper.make_graph(
        nodes, "linear",
        [helper.make_tensor_value_info("images", dtype, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(np.array([2, 3], np.int64), "axes"), numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    meta = {"input_size": size, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "crop_ratio": 1.0,
            "interpolation": "nearest", "classes": [str(d) for d in range(10)]}
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(model, str(path))
    return path


def test_dynamic_batch_and_fp16_inputs_follow_their_own_metadata(small_digits, tmp_path):
    from PIL import Image

    from acmix_deploy.preprocess import Preprocessing
    from acmix_deploy.train.data import ImageFolder

    weight = np.random.default_rng(0).normal(size=(3, 10)).astype(np.float32)
    fp32 = _linear_onnx(tmp_path / "lin.onnx", weight, 12, fp16_io=False)
    fp16 = _linear_onnx(tmp_path / "lin16.onnx", weight, 12, fp16_io=True)
    report = evaluate([fp32, fp16], small_digits, batch_size=7)
    pre = Preprocessing(12, 12, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 1.0, "nearest")
    ds = ImageFolder(small_digits / "val")
    x = np.stack([pre(Image.open(p).convert("RGB")) for p, _ in ds.samples])
    expected = (x.mean(axis=(2, 3)) @ weight).argmax(1)
    assert np.array_equal(report.results[0].top1_pred, expected)
    assert report.results[0].correct1 == int((expected == ds.targets).sum())
    assert report.agreement(report.results[1]) >= 29  # fp16 rounding of the inputs may flip a near tie


def test_engine_runner_wiring_on_cpu(exported, monkeypatch, tmp_path):
    """An engine artifact without a GPU: a stand-in EngineRunner (sidecar, warnings, CUDA-like tensors
    out) runs the engine's ONNX behind the TensorRT runner; batch limits come from the sidecar, preprocessing from that ONNX file, and
    the runner's warnings reach the result's note."""
    from types import SimpleNamespace

    import torch

    import acmix_deploy.runners.trt_engine as trt_runner
    from acmix_deploy.evaluate import open_artifact
    from acmix_deploy.runners import OnnxRuntimeRunner

    _, onnx_path, _ = exported
    session = OnnxRuntimeRunner(onnx_path).activate()
    one_by_one = lambda x: np.concatenate([session.infer(x[i : i + 1])["logits"] for i in range(len(x))])  # noqa: E731
    batches: list[int] = []

    class StandIn:
        def __init__(self, path):
            image = SimpleNamespace(name="images", shape=(-1, 3, -1, -1), dtype="float32")
            self.sidecar = SimpleNamespace(batch_range=(2, 4, 4), onnx_path=str(onnx_path), inputs=[image])
            self.warnings = ["built on GPU A, running on GPU B: rebuilding may be faster"]
            self.input_names, self.output_names = ["images"], ["logits"]
            self.context = self.trt = None

        def infer(self, feeds):
            x = feeds["images"]
            batches.append(len(x))
            return {"logits": torch.from_numpy(one_by_one(x))}

    monkeypatch.setattr(trt_runner, "EngineRunner", StandIn)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    runner = open_artifact(engine)
    assert runner.kind == "tensorrt" and "rebuilding may be faster" in runner.note
    assert "metadata" in runner.note  # preprocessing read from the engine's ONNX file
    x = np.random.default_rng(0).standard_normal((9, 3, runner.pre.input_size, runner.pre.input_size), np.float32)
    got = runner.run(x)
    want = one_by_one(x)
    assert batches == [4, 4, 2] and got.shape == want.shape  # the last image padded to the minimum batch 2
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
