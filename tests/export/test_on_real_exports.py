"""bench, profile, the precision gates and the graph passes on real small exports of registry models
(the session exports of tests/export/conftest.py), not only on the hand-written stand-ins."""

from __future__ import annotations

import onnx
import pytest

from acmix_deploy.bench.naming import ATTENTION, CONV, STAGE1
from acmix_deploy.onnx_names import module_path as node_module_path
from acmix_deploy.bench.profile import profile_onnxruntime
from acmix_deploy.nn.acmix import acmix_blocks
from acmix_deploy.registry import create_model
from tests.conftest import run_cli
from tests.export.conftest import small_export_kwargs


def _blocks(name: str) -> list[str]:
    kwargs = small_export_kwargs(name)
    model = create_model(name, img_size=kwargs["img_size"], **kwargs["overrides"])
    return [path for path, _ in acmix_blocks(model)]


@pytest.mark.parametrize("name, stage1", [("resnet_acmix26", "fused qkv Conv"), ("swin_acmix_t", "qkv MatMul"),
                                          ("pvt_acmix_t", "q / kv")])
def test_profile_attributes_every_real_block(name, stage1, small_export):
    """Every ACmix block of the real export is found by its node names (resnet_acmix26: after the
    passes fused conv1-3 into one Conv; Swin: window attention `attn`), and each gets time in stage I,
    attention and the conv path."""
    result = small_export(name)
    size = small_export_kwargs(name)["img_size"]
    r = profile_onnxruntime(result.path, 1, (size, size), warmup=1, iterations=2, threads=1)
    assert r.status == "ok" and r.run_ms > 0
    found = {b["block"]: b for b in r.blocks()}
    assert sorted(found) == sorted(_blocks(name)), stage1
    for block, times in found.items():
        assert times[STAGE1] > 0 and times[ATTENTION] > 0 and times[CONV] > 0, (block, times)
    totals = r.totals()
    assert sum(totals.values()) == pytest.approx(r.kernel_ms if r.kernel_ms else sum(totals.values()))


def test_fused_qkv_of_the_real_export_is_one_conv_per_block(small_export):
    """resnet_acmix26 is exported with the graph passes: each block's conv1 / conv2 / conv3 are one Conv
    followed by one Split, and no BatchNormalization is left after a Conv."""
    model = onnx.load(str(small_export("resnet_acmix26").path))
    for block in _blocks("resnet_acmix26"):
        stage1 = {f"{block}.{part}" for part in ("conv1", "conv2", "conv3", "qkv")}
        convs = [n for n in model.graph.node if n.op_type == "Conv" and node_module_path(n.name) in stage1]
        assert [node_module_path(n.name) for n in convs] == [f"{block}.qkv"], (block, [n.name for n in convs])
        splits = [n for n in model.graph.node if n.op_type == "Split" and n.input[0] == convs[0].output[0]]
        assert len(splits) == 1 and len(splits[0].output) == 3
    assert not _batchnorms_after_conv(model)


def _batchnorms_after_conv(model: onnx.ModelProto) -> list[str]:
    conv_outputs = {o for n in model.graph.node if n.op_type == "Conv" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type == "BatchNormalization" and n.input[0] in conv_outputs]


def test_graph_passes_on_a_real_unoptimized_export(small_export, tmp_path):
    """resnet_acmix38's export skips the passes: `optimize` fuses its qkv convs, leaves no BatchNorm
    after a Conv, and the gate checks the result against the input file."""
    from acmix_deploy.passes.pipeline import optimize_file

    src = small_export("resnet_acmix38").path
    report = optimize_file(src, tmp_path / "r38.opt.onnx", latency_runs=0)
    blocks = len(_blocks("resnet_acmix38"))
    assert not _batchnorms_after_conv(onnx.load(report.output))
    assert report.ops_after.get("BatchNormalization", 0) <= report.ops_before.get("BatchNormalization", 0)
    assert report.conv_before - report.conv_after >= 2 * blocks  # three 1x1 convs -> one, per block (at least)
    assert report.ops_after.get("Split", 0) - report.ops_before.get("Split", 0) >= blocks
    assert report.parity and all(line.startswith("PASSED") for line in report.parity)


@pytest.mark.parametrize("name", ["swin_acmix_t", "pvt_acmix_s"])
def test_fp16_gate_on_a_real_export(name, small_export, tmp_path):
    from acmix_deploy.precision.fp16 import convert_fp16

    fp16 = convert_fp16(small_export(name).path, tmp_path / f"{name}.fp16.onnx", samples=2, holdout=4, record=False)
    assert fp16.report.cosine >= 0.999 and fp16.path.exists(), fp16.report.line()
    weights = {t.data_type for t in onnx.load(str(fp16.path)).graph.initializer if len(t.dims) > 1}
    assert onnx.TensorProto.FLOAT16 in weights


@pytest.mark.parametrize("name", ["resnet_acmix26", "swin_acmix_t", "san_acmix19"])
def test_int8_plan_on_a_real_export(name, small_export, tmp_path):
    """Stage I is quantized; attention MatMuls (two activations) and ResNet's grouped dep_conv stay in
    float; the int8 graph runs and its holdout agreement is reported as a number."""
    from acmix_deploy.precision.int8 import quantize_int8

    int8 = quantize_int8(small_export(name).path, tmp_path / f"{name}.int8.onnx", calib_data="random",
                         calib_size=8, holdout=4, record=False)
    reasons = set(int8.plan.exclude.values())
    assert len(int8.plan.quantize) >= len(_blocks(name))
    if name.startswith("swin"):
        assert "attention MatMul (two activations)" in reasons or "attention path" in reasons
    if name.startswith("resnet"):
        assert "grouped conv (dep_conv)" in reasons
    ops = {n.op_type for n in onnx.load(str(int8.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert int8.report.samples == 4 and 0.0 <= int8.report.top1_agreement <= 1.0 and int8.report.cosine > 0


def test_bench_times_a_real_export(small_export, tmp_path):
    path = small_export("pvt_s").path  # fixed batch 2
    run = run_cli("bench", "--onnx", path, "--batch", "2", "--iterations", "2", "--warmup-iterations", "0", "--no-memory",
                  "--threads", "1", "-o", tmp_path / "b.json")
    assert run.code == 0, run.err
    import json

    (row,) = [r for r in json.loads((tmp_path / "b.json").read_text())["rows"] if r["backend"] == "onnxruntime"]
    assert row["status"] == "ok" and row["batch"] == 2 and row["latency_ms"]["median"] > 0
    assert row["throughput_ips"] == pytest.approx(2 * 1000 / row["latency_ms"]["median"], rel=1e-6)
