import json
import re

import pytest
from PIL import Image

from tests.bench import bench_standins as S
from acmix_deploy.bench import sources
from tests.conftest import run_cli


@pytest.fixture(autouse=True)
def standin_models(monkeypatch):
    monkeypatch.setattr(sources, "resolve_model", S.resolver)


def test_bench_acceptance_shape(tmp_path):
    code, out, err = run_cli(
        "bench", "--model", "tiny_acmix", "--baseline", "tiny_plain", "--backend", "onnxruntime",
        "--backend", "torch,tensorrt", "--batch", "1", "--batch", "2", "--iterations", "3",
        "--warmup-iterations", "1", "--threads", "1", "--no-memory", "--img-size", "16",
        "-o", str(tmp_path / "out" / "b.json"), "--csv", str(tmp_path / "b.csv"), "--plot", str(tmp_path / "b.png"),
    )  # fmt: skip
    assert code == 0, err
    assert "ratio" in out and re.search(r"\d\.\d\dx", out) and ("unavailable: TensorRT needs a CUDA GPU" in out or "unavailable: tensorrt needs an engine file" in out)
    doc = json.loads((tmp_path / "out" / "b.json").read_text())
    assert doc["schema_version"] == "1.0" and doc["config"]["batches"] == [1, 2]
    ok = [r for r in doc["rows"] if r["status"] == "ok"]
    assert len(ok) == 2 * 2 * 2 and all(r["ratio"] > 0 for r in ok if r["role"] == "model")
    assert (tmp_path / "b.csv").read_text().startswith("role,model,backend,batch,status")
    with Image.open(tmp_path / "b.png") as img:
        assert img.format == "PNG"


def test_bench_onnx_file(tmp_path):
    path = S.export(S.make_tiny(), tmp_path / "m.onnx", 16)
    code, out, err = run_cli("bench", "--onnx", str(path), "--iterations", "2", "--warmup-iterations", "0",
                             "--no-memory", "--threads", "1", "-o", str(tmp_path / "b.json"))  # fmt: skip
    assert code == 0, err
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    ort = [r for r in rows if r["backend"] == "onnxruntime"]
    assert len(ort) == 1 and ort[0]["status"] == "ok" and ort[0]["iterations"] >= 2
    assert ort[0]["latency_ms"]["median"] > 0 and ort[0]["throughput_ips"] > 0


def test_bench_onnx_file_at_another_size_is_a_one_line_error(tmp_path):
    path = S.export(S.make_tiny(), tmp_path / "m.onnx", 16)
    code, out, err = run_cli("bench", "--onnx", str(path), "--img-size", "32", "--iterations", "1",
                             "--no-memory")  # fmt: skip
    assert code == 2 and "Traceback" not in err + out and len(err.strip().splitlines()) == 1
    assert "takes 16x16 images (fixed at export), not 32x32" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--duration-s", "1", "--iterations", "2"], "either --duration-s or --iterations"),
        (["--batch", "1,x"], "--batch takes integers"),
        (["--batch", "0"], "--batch values must be >= 1"),
        (["--backend", "tflite"], "unknown backend"),
        (["--plot", "out.jpg"], "--plot writes a PNG"),
        (["-o", "same.out", "--csv", "same.out"], "output files must differ"),
        (["--onnx", "missing.onnx"], "give only one of"),
        (["--shift", "diagonal"], "--shift must be"),
    ],
)
def test_bench_user_errors_are_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("bench", "--model", "tiny_acmix", "--no-memory", *args)
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_bench_nothing_measurable_exits_nonzero_after_the_table(tmp_path):
    code, out, err = run_cli("bench", "--model", "tiny_acmix", "--backend", "tensorrt", "--no-memory",
                             "--iterations", "1", "--plot", str(tmp_path / "p.png"))  # fmt: skip
    assert code == 2 and "unavailable" in out and "no backend produced a measurement" in err
    assert not (tmp_path / "p.png").exists()


def test_bench_empty_workspace(tmp_path):
    code, _, err = run_cli("bench", "--workspace", str(tmp_path), "--iterations", "1")
    assert code == 2 and "no onnx" in err.lower()


def test_profile_command(tmp_path):
    path = S.export(S.make_tiny(), tmp_path / "m.onnx", 16)
    code, out, err = run_cli("profile", "--onnx", str(path), "--iterations", "2", "--warmup", "0",
                             "--threads", "1", "-o", str(tmp_path / "p.json"), "--plot", str(tmp_path / "p.png"))  # fmt: skip
    assert code == 0, err
    for word in ("stage I", "attention", "conv path", "rest", "layer1.0.conv2", "tensorrt: unavailable"):
        assert word in out
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["kind"] == "acmix-deploy/profile" and doc["results"][0]["blocks"]
    with Image.open(tmp_path / "p.png") as img:
        assert img.format == "PNG"


def test_profile_model_name(tmp_path):
    code, out, err = run_cli("profile", "--model", "tiny_acmix", "--iterations", "1", "--warmup", "0",
                             "--backend", "onnxruntime", "-o", str(tmp_path / "p.json"))  # fmt: skip
    assert code == 0, err
    (result,) = json.loads((tmp_path / "p.json").read_text())["results"]
    blocks = {b["block"]: b for b in result["blocks"]}
    assert {"layer1.0.conv2", "layer1.1.conv2"} <= set(blocks) and result["run_ms"] > 0
    assert all(b["stage1"] > 0 and b["attention"] > 0 and b["conv"] > 0 for b in blocks.values())


def test_engine_input_size_comes_from_its_sidecar(tmp_path):
    """An engine built at 16x16 is benched at 16x16 without --img-size; another size is a one-line error;
    an engine without its sidecar is refused (checked before any GPU)."""
    import hashlib

    from acmix_deploy.errors import AcmixError
    from acmix_deploy.runners.sidecar import Sidecar, TensorInfo, sidecar_path

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    with pytest.raises(AcmixError, match="is missing"):  # an engine without its sidecar is refused, before a GPU
        sources.from_file(engine)
    sidecar = Sidecar(
        model="m", precision="fp32", inputs=[TensorInfo("images", "float32", [-1, 3, 16, 16])],
        outputs=[TensorInfo("logits", "float32", [-1, 10])], profiles={"images": {"min": [1], "opt": [1], "max": [1]}},
        onnx_path="m.onnx", onnx_sha256="", engine_sha256=hashlib.sha256(b"\0").hexdigest(), trt_flavour="tensorrt-rtx", trt_version="1",
        gpu_name=None, gpu_compute_capability=None, target_compute_capabilities=None, build_seconds=0.0,
        created="", toolkit_version="0",
    )  # fmt: skip
    sidecar_path(engine).write_text(sidecar.to_json())
    assert sources.from_file(engine).input_size == (16, 16)
    assert sources.from_file(engine, img_size=16).input_size == (16, 16)
    with pytest.raises(AcmixError, match="takes 16x16 images .*not 32x32"):
        sources.from_file(engine, img_size=32)
