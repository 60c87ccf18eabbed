import json

import pytest
from PIL import Image
from rich.console import Console

from tests.bench import bench_standins as S
from acmix_deploy.bench.naming import ATTENTION, CATEGORIES, CONV, REST, STAGE1
from acmix_deploy.bench.profile import attribute, layer_times_to_nodes, profile, render_profile, write_profile_json, write_profile_plot
from acmix_deploy.errors import AcmixError

BLOCKS = ["layer1.0.conv2", "layer1.1.conv2"]


@pytest.fixture(scope="module", params=["dotted", "torchscript"])
def onnx_file(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("p") / f"tiny_{request.param}.onnx"
    return S.export(S.make_tiny(), path, 16, naming=request.param)


@pytest.fixture(scope="module")
def report(onnx_file):
    return profile(onnx=onnx_file, iterations=3, warmup=1, threads=1)


def test_onnxruntime_profile_finds_blocks_and_categories(report):
    r = report.get("onnxruntime")
    assert r.status == "ok" and r.nodes
    assert [b["block"] for b in r.blocks()] == BLOCKS
    by_path = {}
    for n in r.nodes:
        by_path.setdefault(n.path, set()).add((n.block, n.category))
    assert by_path["layer1.0.conv2.conv1"] == {("layer1.0.conv2", STAGE1)}
    assert by_path["layer1.1.conv2.attention"] == {("layer1.1.conv2", ATTENTION)}
    assert by_path["layer1.0.conv2.fc"] == {("layer1.0.conv2", CONV)}
    assert by_path["layer1.0.conv2.dep_conv"] == {("layer1.0.conv2", CONV)}
    assert by_path["layer1.0.conv3"] == {(None, REST)}
    # layout nodes ONNX Runtime generates (NCHWc, on x86 CPUs) are traced to the conv they serve
    reorders = [n for n in r.nodes if n.op == "ReorderOutput"]
    if reorders:
        assert all(n.path for n in reorders)
        assert any(n.path == "layer1.0.conv2.fc" and n.category == CONV for n in reorders)
    totals = r.totals()
    assert all(totals[c] > 0 for c in CATEGORIES)
    assert sum(totals.values()) == pytest.approx(r.kernel_ms)
    blocks_sum = sum(b["total"] for b in r.blocks()) + r.outside_blocks_ms()
    assert blocks_sum == pytest.approx(r.kernel_ms)
    for b in r.blocks():
        assert b["total"] == pytest.approx(sum(b[c] for c in CATEGORIES))
    ops = r.op_types()
    assert ops[0]["ms"] >= ops[-1]["ms"] and {"Conv", "Softmax"} <= {o["op"] for o in ops}
    assert sum(o["ms"] for o in ops) == pytest.approx(r.kernel_ms)
    assert r.run_ms > 0


def test_tensorrt_profile_is_an_unavailable_row(report):
    t = report.get("tensorrt")
    assert t.status == "unavailable" and ("engine" in t.reason or "needs a CUDA GPU" in t.reason)


def test_profile_json_and_plot(report, tmp_path):
    doc = json.loads(write_profile_json(report, tmp_path / "p.json").read_text())
    assert doc["schema_version"] == "1.0" and doc["kind"] == "acmix-deploy/profile"
    ort = doc["results"][0]
    assert set(ort["totals_ms"]) == set(CATEGORIES) and [b["block"] for b in ort["blocks"]] == BLOCKS
    assert {"name", "op", "path", "block", "category", "ms"} == set(ort["nodes"][0])
    assert "cpu_model" in doc["machine"] and doc["config"]["iterations"] == 3
    png = write_profile_plot(report, tmp_path / "p.png")
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] > 800
    console = Console(width=200, record=True)
    render_profile(report, console)
    text = console.export_text()
    for word in ("stage I", "attention", "conv path", "rest", "layer1.1.conv2", "total", "outside ACmix blocks"):
        assert word in text
    assert "tensorrt: unavailable" in text


def test_profile_from_model_name_exports_it():
    rep = profile(model="tiny_acmix", img_size=16, iterations=2, warmup=0, threads=1, backends=["onnxruntime"],
                  resolver=S.resolver)  # fmt: skip
    assert [b["block"] for b in rep.get("onnxruntime").blocks()] == BLOCKS and rep.model == "tiny_acmix"


def test_plain_model_has_no_blocks_and_says_so(tmp_path):
    path = S.export(S.make_tiny(acmix=False), tmp_path / "plain.onnx", 16)
    rep = profile(onnx=path, iterations=2, warmup=0, threads=1, backends=["ort"])
    r = rep.get("onnxruntime")
    assert r.blocks() == [] and r.totals()[REST] == pytest.approx(r.kernel_ms)
    assert any("no ACmix block" in n for n in rep.notes)


def test_tensorrt_layer_names_are_attributed():
    times = {"layer1.0.conv2.conv1/Conv_0": 2.0, "layer1.0.conv2.attention/Softmax_4": 1.0,
             "layer1.0.conv2.dep_conv/Conv_7": 0.5, "layer1.0.conv3/Conv_9": 0.25}  # fmt: skip
    nodes = attribute(times, {k: k.split("/")[1].split("_")[0] for k in times})
    cats = {n.name: (n.block, n.category) for n in nodes}
    assert cats["layer1.0.conv2.conv1/Conv_0"] == ("layer1.0.conv2", STAGE1)
    assert cats["layer1.0.conv2.attention/Softmax_4"] == ("layer1.0.conv2", ATTENTION)
    assert cats["layer1.0.conv2.dep_conv/Conv_7"] == ("layer1.0.conv2", CONV)
    assert cats["layer1.0.conv3/Conv_9"] == (None, REST)


def test_tensorrt_layers_starting_at_one_node_add_up():
    times, ops = layer_times_to_nodes(
        {"a.attention/MatMul_1 + a.attention/Softmax_2": 4.0, "{ForeignNode[a.attention/MatMul_1...a/Add_5]}": 2.0,
         "a.dep_conv/Conv_3": 1.0},
        runs=2,
    )  # fmt: skip
    assert times == {"a.attention/MatMul_1": 3.0, "a.dep_conv/Conv_3": 0.5}
    assert ops == {"a.attention/MatMul_1": "MatMul", "a.dep_conv/Conv_3": "Conv"}


@pytest.mark.parametrize(
    "kwargs, message",
    [({"batch": 0}, "--batch"), ({"backends": ["torch"]}, "profile supports"), ({"threads": 0}, "--threads")],
)
def test_profile_bad_input(onnx_file, kwargs, message):
    with pytest.raises(AcmixError, match=message):
        profile(onnx=onnx_file, **kwargs)
