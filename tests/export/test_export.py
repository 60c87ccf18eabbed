"""ONNX export: every registered model exports and verifies; file format, names, metadata, errors."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
import torch

from acmix_deploy import workspace as ws
from acmix_deploy.errors import AcmixError, ParityError
from acmix_deploy.export import (
    FEATURE_NAMES, METADATA_KEYS, check_input_size, default_filename, export_onnx, input_size,
    reference_and_deploy, settle_batchnorm, verification_images,
)
from acmix_deploy.registry import create_model, get_card, list_models
from tests.conftest import parity_numbers, run_cli, small_overrides
from tests.export.conftest import EXPORT_OPTIONS, small_export_kwargs

NAME_RE = re.compile(r"^[A-Za-z0-9_.]*/[A-Za-z]+_\d+$")


def _meta(model: onnx.ModelProto) -> dict:
    return {p.key: json.loads(p.value) for p in model.metadata_props}


def _dims(value) -> list:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]


def _tensor_types(model: onnx.ModelProto) -> set[int]:
    types = {t.data_type for t in model.graph.initializer}
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                types.add(attr.t.data_type)
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        types.add(value.type.tensor_type.elem_type)
    return types


def _acmix_block_paths(model_name: str) -> list[str]:
    from acmix_deploy.nn.acmix import acmix_blocks

    model = create_model(model_name, **{**small_export_kwargs(model_name)["overrides"],
                                        "img_size": small_export_kwargs(model_name)["img_size"]})
    return [path for path, _ in acmix_blocks(model)]


def _reference(name: str) -> torch.nn.Module:
    """The reference model export_onnx verified against: same seed, same settled BatchNorm."""
    kwargs = small_export_kwargs(name)
    return reference_and_deploy(name, build={"img_size": kwargs["img_size"], **kwargs["overrides"]})[0]


def test_all_registered_models_are_covered():
    assert sorted(EXPORT_OPTIONS) == list_models()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPORT_OPTIONS))
def test_every_registered_model_exports_and_verifies(name, small_export):
    result = small_export(name)
    options = EXPORT_OPTIONS[name]
    assert result.verified and len(result.parity) == len(result.output_names)
    assert all(line.startswith("PASSED") and "max rel" in line for line in result.parity)
    for numbers in map(parity_numbers, result.parity):
        assert numbers["max_abs"] <= numbers["limit"] and numbers["cosine"] > 0.9999, result.parity
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model, full_check=True)

    size = small_export_kwargs(name)["img_size"]
    batch = "batch" if options.get("dynamic_batch") else options.get("batch", 1)
    assert [i.name for i in model.graph.input] == ["images"]
    assert _dims(model.graph.input[0]) == [batch, 3, size, size]
    outputs = list(FEATURE_NAMES) if options.get("features") else ["logits"]
    assert [o.name for o in model.graph.output] == outputs
    if not options.get("features"):
        assert _dims(model.graph.output[0]) == [batch, 10]

    meta = _meta(model)
    card = get_card(name)
    assert set(METADATA_KEYS) <= set(meta)
    assert meta["model"] == name and meta["input_size"] == [3, size, size] and meta["num_classes"] == 10
    assert meta["mean"] == list(card.mean) and meta["std"] == list(card.std)
    assert meta["crop_ratio"] == card.crop_ratio and meta["interpolation"] == card.interpolation
    assert meta["checkpoint_sha256"] is None and meta["toolkit_version"]

    assert onnx.TensorProto.DOUBLE not in _tensor_types(model)
    names = [n.name for n in model.graph.node]
    assert len(set(names)) == len(names)
    if not options.get("optimize"):
        assert all(NAME_RE.match(n) for n in names), [n for n in names if not NAME_RE.match(n)][:5]
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"Col2Im", "Unfold", "Loop", "ScatterND"}


@pytest.mark.parametrize("name", ["resnet_acmix50", "swin_acmix_t"])
def test_acmix_paths_are_named_and_compact(name, small_export):
    """Stage I, attention and conv path nodes carry the block's module path; a bounded number of
    gathers per block (no im2col chains); Swin blocks contain no roll (Slice + Concat)."""
    model = onnx.load(str(small_export(name).path))
    nodes = model.graph.node
    blocks = _acmix_block_paths(name)
    assert blocks
    for p in blocks:
        mine = [n for n in nodes if n.name.startswith(p + ".") or n.name.startswith(p + "/")]
        parts = {n.name.split("/")[0] for n in mine}
        stage1 = {p + ".qkv"} if name.startswith("swin") else {p + ".conv1", p + ".conv2", p + ".conv3"}
        assert stage1 <= parts
        assert any(q.startswith(p + ".attention") for q in parts)
        assert any(q.startswith(p + ".conv_path") for q in parts)
        # ResNet: halo blocks; Swin: roll, window partition, window reverse, dep_conv group order, unroll
        assert sum(n.op_type == "Gather" for n in mine) <= 5
        assert not any(n.op_type == "Concat" for n in mine if ".attention" in n.name)
    if name.startswith("swin"):  # a roll would be Slice + Concat; the only Slices split q, k, v
        for p in blocks:  # proj and the sum of both paths: one Gemm whose C input is the conv path output
            gemms = [n for n in nodes if n.name.startswith(p + ".attention.proj/") and n.op_type == "Gemm"]
            assert len(gemms) == 1 and len(gemms[0].input) == 3
            assert not any(n.name.startswith(p + "/") and n.op_type == "Add" for n in nodes)
        in_blocks = [n for n in nodes if ".blocks." in n.name]
        assert not any(n.op_type == "Concat" for n in in_blocks)
        assert sum(n.op_type == "Slice" for n in in_blocks) <= 3 * len(blocks)


def test_optimize_runs_the_graph_passes(small_export):
    result = small_export("resnet_acmix26")
    assert result.optimized and any("graph passes applied" in note for note in result.notes)


def test_swin_gelus_run_as_one_onnx_runtime_kernel(small_export, tmp_path):
    """After the export's graph passes, ONNX Runtime fuses every MLP GELU into a single Gelu node."""
    import onnxruntime as ort

    path = small_export("swin_acmix_s").path  # the small Swin export that runs the graph passes
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "ort.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    kinds = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
    blocks = sum(small_export_kwargs("swin_acmix_s")["overrides"]["depths"])
    assert kinds.count("Gelu") == blocks and "Erf" not in kinds


def test_our_checkpoint_supplies_model_name_and_overrides(tmp_path):
    """A checkpoint written by this toolkit is read once and names its model and build overrides."""
    from acmix_deploy.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ov = small_overrides("resnet_acmix26")
    model = create_model("resnet_acmix26", **ov)
    ckpt = save_checkpoint(model, tmp_path / "mine.pth", classes=[f"c{i}" for i in range(ov["num_classes"])])
    result = export_onnx(None, checkpoint=ckpt, output=tmp_path / "m.onnx", optimize=False)
    assert result.model_name == "resnet_acmix26" and result.img_size == ov["img_size"]
    assert all(line.startswith("PASSED") for line in result.parity)
    logits = onnx.load(str(result.path)).graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    assert logits == ov["num_classes"]  # the saved overrides (width, classes, size) were applied


def test_dynamic_batch_runs_at_batch_1_and_8(small_export):
    from acmix_deploy.runners import OnnxRuntimeRunner, RunnerOptions

    name = "resnet_acmix26"
    result = small_export(name)
    reference = _reference(name)
    runner = OnnxRuntimeRunner(result.path, options=RunnerOptions(threads=2)).activate()
    images = verification_images(reference.card, small_export_kwargs(name)["img_size"], 8, seed=3)
    for n in (1, 8):
        got = runner.infer(images[:n])["logits"]
        with torch.no_grad():
            want = reference(torch.from_numpy(images[:n])).numpy()
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())


def test_features_export_has_four_stage_maps(small_export):
    result = small_export("resnet_acmix50")
    model = onnx.load(str(result.path))
    shapes = [_dims(o) for o in model.graph.output]
    width, size = 16, 64
    expected = [[1, width * 4 * 2**i, size // 4 // 2**i, size // 4 // 2**i] for i in range(4)]
    assert shapes == expected
    assert [line.split()[1] for line in result.parity] == [f"{n}:" for n in FEATURE_NAMES]


def test_reexport_is_byte_identical(small_export, tmp_path):
    first = small_export("swin_acmix_t")
    again = export_onnx("swin_acmix_t", output=tmp_path / "again.onnx", verify=False,
                        **small_export_kwargs("swin_acmix_t"))
    assert again.path.read_bytes() == first.path.read_bytes()


@pytest.mark.parametrize("name", ["resnet_acmix26", "swin_acmix_t"])
def test_graph_passes_are_deterministic_on_real_exports(small_export, name):
    """The default export also runs the graph passes: the same input must give the same bytes."""
    from acmix_deploy.passes.pipeline import optimize_model

    model = onnx.load(str(small_export(name).path))
    first, _ = optimize_model(model, latency_runs=0)
    again, _ = optimize_model(model, latency_runs=0)
    assert first.SerializeToString() == again.SerializeToString()


def test_failed_verification_leaves_no_file(small_export, tmp_path, monkeypatch):
    """A graph that computes something else (one weight changed) fails parity; nothing is written."""
    import acmix_deploy.export as exp

    good = onnx.load(str(small_export("resnet_acmix26").path))
    conv = next(i for i in good.graph.initializer if len(i.dims) == 4)
    array = onnx.numpy_helper.to_array(conv).copy()
    array *= 1.5
    conv.CopyFrom(onnx.numpy_helper.from_array(array, conv.name))
    monkeypatch.setattr(exp, "to_onnx_proto", lambda *a, **k: good)
    dest = tmp_path / "out" / "broken.onnx"
    kwargs = small_export_kwargs("resnet_acmix26")
    kwargs["optimize"] = False
    with pytest.raises(ParityError) as info:
        export_onnx("resnet_acmix26", output=dest, **kwargs)
    assert "FAILED logits" in str(info.value) and "\n" not in str(info.value)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_input_size_check(small_export):
    path = small_export("resnet_acmix26").path  # dynamic batch, fixed H and W
    check_input_size(path, 64, 64)
    check_input_size(onnx.load(str(path)), 64, 64)
    assert input_size(path) == (64, 64)
    with pytest.raises(AcmixError) as info:
        check_input_size(path, 96, 96)
    assert "64x64" in str(info.value) and "--img-size 96" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(AcmixError):
        check_input_size(path.parent / "missing.onnx", 64, 64)


def test_bad_arguments_fail_before_any_work(tmp_path):
    out = tmp_path / "m.onnx"
    for kwargs in ({"batch": 0}, {"batch": 2, "dynamic_batch": True}, {"shift": "wiggle"}, {"opset": 11}):
        with pytest.raises(AcmixError):
            export_onnx("resnet26", output=out, **kwargs)
    with pytest.raises(AcmixError, match="unknown model"):
        export_onnx("resnet_nope", output=out)
    with pytest.raises(AcmixError, match="directory"):
        export_onnx("resnet26", output=tmp_path)
    assert not out.exists()


def test_default_filenames():
    assert default_filename("resnet_acmix50", 224, 1, False, False) == "resnet_acmix50_224.onnx"
    assert default_filename("swin_t", 224, 4, False, False) == "swin_t_224_b4.onnx"
    assert default_filename("swin_t", 64, 1, True, True) == "swin_t_64_dyn_features.onnx"


def test_cli_unwritable_output_is_one_line_error():
    code, _, err = run_cli("export", "--model", "resnet26", "-o", "/proc/nope.onnx")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "/proc" in lines[0]


@pytest.mark.slow
def test_cli_export_tensor_shift_into_workspace(tmp_path):
    """The explicit-shift form (paper Table 7) exports and verifies; the file lands in the workspace."""
    workspace = tmp_path / "ws"
    code, out, err = run_cli(
        "export", "--model", "resnet_acmix26", "--img-size", "64", "--shift", "tensor",
        "--override", "width=16", "--override", "k_att=3", "--override", "num_classes=10",
        "--override", "layers=[1,1,1,1]",  # one block per stage: the tensor shift's Slices trace slowly
        "--no-optimize", "--workspace", str(workspace),
    )
    assert code == 0, err
    (line,) = [ln for ln in out.splitlines() if ln.startswith("PASSED logits")]
    numbers = parity_numbers(line)
    assert numbers["max_abs"] <= numbers["limit"] and numbers["cosine"] > 0.9999
    art = ws.newest(ws.ONNX, "resnet_acmix26", workspace=workspace)
    assert art.path.endswith("resnet_acmix26/resnet_acmix26_64.onnx") and art.meta["shift"] == "tensor"
    model = onnx.load(art.path)
    assert _meta(model)["shift"] == "tensor"
    # explicit shifts: no grouped 3x3 dep_conv, Slice-based shifts inside the conv path instead
    conv_path = [n for n in model.graph.node if ".conv_path" in n.name]
    assert not any(n.op_type == "Conv" and "dep_conv" in n.name for n in conv_path)
    assert any(n.op_type == "Slice" for n in conv_path)


def test_checkpoint_export_uses_its_size_classes_and_hash(tmp_path):
    """A toolkit checkpoint supplies the model's overrides (size, width, classes); its sha256 is recorded."""
    from acmix_deploy.checkpoint import save_checkpoint
    from acmix_deploy.fileio import sha256_file

    overrides = dict(width=16, img_size=48, num_classes=3)
    model = create_model("resnet26", **overrides)
    settle_batchnorm(model, model.card, 48)  # trained-like statistics
    ckpt = save_checkpoint(model, tmp_path / "r26.pt", classes=["a", "b", "c"])
    result = export_onnx("resnet26", checkpoint=ckpt, output=tmp_path / "r26.onnx", optimize=False)
    assert result.verified and result.img_size == 48
    meta = _meta(onnx.load(str(result.path)))
    assert meta["checkpoint_sha256"] == sha256_file(ckpt)
    assert meta["classes"] == ["a", "b", "c"] and meta["num_classes"] == 3 and meta["input_size"] == [3, 48, 48]


def test_learned_shift_kernels_refuse_fixed_shift_export(tmp_path):
    from acmix_deploy.checkpoint import save_checkpoint

    model = create_model("resnet_acmix26", width=16, k_att=3, img_size=64)
    with torch.no_grad():
        model.layer1[0].conv2.dep_conv.weight.add_(0.1)  # learned, no longer one-hot
    ckpt = save_checkpoint(model, tmp_path / "learned.pt")
    with pytest.raises(AcmixError, match="shift='group'"):
        export_onnx("resnet_acmix26", checkpoint=ckpt, shift="fixed", output=tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
