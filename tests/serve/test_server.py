"""The bundled tritonserver on a repository written by triton-repo (--backend python --ensemble),
on 127.0.0.1 with ports chosen free at run time: outputs over HTTP and gRPC against a direct ONNX
Runtime run, the ensemble against `acmix-deploy eval`, bad requests, 200 concurrent requests."""

from __future__ import annotations

import io
import re
import asyncio

import numpy as np
import pytest

from tests.serve.conftest import CLASSES, SIZE, group_gone, needs_numpy1, needs_server, ort_logits, port_free

pytestmark = needs_server
NAME = "resnet_acmix26"


@pytest.fixture(scope="module")
def served(tiny_onnx, tmp_path_factory):
    from acmix_deploy.serve.repository import RepoOptions, triton_repo
    from acmix_deploy.serve.server import TritonServer

    repo = tmp_path_factory.mktemp("repo") / "models"
    triton_repo([tiny_onnx], repo, RepoOptions(backend="python", ensemble=True, threads=1, max_batch_size=8))
    server = TritonServer(repo).start(ready_timeout_s=180)
    try:
        yield server
    finally:
        pgid = server.process.pid
        server.stop()
        assert group_gone(pgid), "tritonserver or a python stub outlived stop()"
        for port in (server.http_port, server.grpc_port, server.metrics_port):
            assert port_free(port), f"port {port} still taken after stop()"


def _http(server):
    import tritonclient.http as httpclient

    return httpclient, httpclient.InferenceServerClient(server.url, network_timeout=60)


def _infer_http(server, x, model=NAME):
    httpclient, client = _http(server)
    item = httpclient.InferInput("images", list(x.shape), "FP32")
    item.set_data_from_numpy(x)
    return client.infer(model, [item]).as_numpy("logits")


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def test_http_and_grpc_equal_onnxruntime(served, tiny_onnx):
    import tritonclient.grpc as grpcclient

    from acmix_deploy.parity import compare

    x = _images(5, 0)
    reference = ort_logits(tiny_onnx, x)
    via_http = _infer_http(served, x)
    client = grpcclient.InferenceServerClient(served.grpc_url)
    item = grpcclient.InferInput("images", list(x.shape), "FP32")
    item.set_data_from_numpy(x)
    via_grpc = client.infer(NAME, [item], client_timeout=60).as_numpy("logits")
    client.close()
    for got in (via_http, via_grpc):
        result = compare(reference, got, name="served logits")
        assert result.passed, result.line()
        assert result.max_abs <= 1e-4 * result.ref_scale


def _encoded(path) -> bytes:
    return path.read_bytes()


def _classify(server, blobs: list[bytes], k: int = 0):
    httpclient, client = _http(server)
    data = np.array([[b] for b in blobs], dtype=object)
    item = httpclient.InferInput("image", list(data.shape), "BYTES")
    item.set_data_from_numpy(data)
    outputs = [httpclient.InferRequestedOutput("logits", class_count=k)] if k else None
    result = client.infer(f"{NAME}_classify", [item], outputs=outputs)
    return result.as_numpy("logits")


@needs_numpy1
def test_ensemble_top1_equals_eval_on_digits(served, tiny_onnx, digits_root):
    from acmix_deploy.evaluate import evaluate
    from acmix_deploy.train.data import ImageFolder, split_dir

    report = evaluate([str(tiny_onnx)], digits_root, batch_size=64)
    eval_top1 = report.results[0].top1_pred
    files = [p for p, _ in ImageFolder(split_dir(digits_root, "val")).samples]
    assert len(files) == len(eval_top1) == 360
    served_top1 = []
    for i in range(0, len(files), 8):
        served_top1.append(_classify(served, [_encoded(f) for f in files[i:i + 8]]).argmax(1))
    served_top1 = np.concatenate(served_top1)
    assert np.array_equal(served_top1, eval_top1), f"{int((served_top1 != eval_top1).sum())} of 360 differ"
    # the classification extension: top-k labels from the label file the ensemble carries
    labels = _classify(served, [_encoded(f) for f in files[:4]], k=3)
    assert labels.shape == (4, 3)
    assert [CLASSES[int(v)] for v in served_top1[:4]] == [row[0].decode().split(":")[2] for row in labels]


@needs_numpy1
def test_preprocess_model_equals_eval_transform(served, digits_root):
    """The self-contained model.py (numpy + Pillow) gives the toolkit's eval tensors for the same bytes."""
    from PIL import Image

    import tritonclient.http as httpclient

    from acmix_deploy.serve.repository import inspect_onnx
    from acmix_deploy.preprocess import Preprocessing

    rng = np.random.default_rng(3)
    blobs = []
    for shape, fmt in (((37, 23, 3), "JPEG"), ((16, 40, 3), "PNG"), ((20, 20, 3), "PNG")):
        buf = io.BytesIO()
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(buf, fmt)
        blobs.append(buf.getvalue())
    blobs.append(next((digits_root / "val" / "3").iterdir()).read_bytes())
    pre = Preprocessing.from_dict(inspect_onnx(next(served.repository.glob(f"{NAME}/1/model.onnx"))).preprocessing)
    expected = np.stack([pre(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs])
    data = np.array([[b] for b in blobs], dtype=object)
    item = httpclient.InferInput("image", list(data.shape), "BYTES")
    item.set_data_from_numpy(data)
    got = httpclient.InferenceServerClient(served.url).infer(f"{NAME}_preprocess", [item]).as_numpy("images")
    assert got.shape == expected.shape == (4, 3, SIZE, SIZE)
    assert np.array_equal(got, expected)


def _error(call) -> str:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as info:
        call()
    return str(info.value)


def test_bad_requests_get_clear_errors_and_server_keeps_answering(served, tiny_onnx):
    httpclient, client = _http(served)

    def send(array, dtype="FP32", model=NAME):
        item = httpclient.InferInput("images", list(array.shape), dtype)
        item.set_data_from_numpy(array)
        return client.infer(model, [item])

    assert re.search(r"unexpected shape|shape", _error(lambda: send(_images(1, 0)[:, :, :19, :19])))
    assert re.search(r"data-type|datatype|FP64", _error(lambda: send(_images(1, 0).astype(np.float64), "FP64")))
    assert re.search(r"batch", _error(lambda: send(_images(9, 0))), re.I)  # max_batch_size is 8
    assert re.search(r"unknown model|not found", _error(lambda: send(_images(1, 0), model="no_such_model")))
    empty = np.zeros((0, 3, SIZE, SIZE), np.float32)  # Triton 2.51: "input byte size mismatch ... got 0"
    assert re.search(r"byte size|batch", _error(lambda: send(empty)))
    x = _images(3, 7)
    assert np.allclose(_infer_http(served, x), ort_logits(tiny_onnx, x), rtol=0, atol=1e-4)


@needs_numpy1
def test_garbage_image_bytes_get_a_clear_error(served, tiny_onnx):
    assert "cannot decode the image" in _error(lambda: _classify(served, [b"\x00\xffnot an image"]))
    blob = io.BytesIO()
    __import__("PIL.Image", fromlist=["Image"]).fromarray(np.zeros((16, 16, 3), np.uint8)).save(blob, "PNG")
    assert _classify(served, [blob.getvalue()]).shape == (1, 10)  # the ensemble still answers


def test_200_concurrent_requests_are_correct_and_batched(served, tiny_onnx):
    from acmix_deploy.parity import compare

    x = _images(200, 11)
    reference = ort_logits(tiny_onnx, x)
    before = _batch_counts(served)

    got = np.stack(asyncio.run(_concurrent(served, x)))
    result = compare(reference, got, name="200 concurrent")
    assert result.passed, result.line()
    after = _batch_counts(served)
    formed = {b: after.get(b, 0) - before.get(b, 0) for b in after}
    assert sum(b * n for b, n in formed.items()) == 200
    assert max(b for b, n in formed.items() if n) > 1, f"no dynamic batch formed: {formed}"
    x = _images(2, 12)
    assert np.allclose(_infer_http(served, x), ort_logits(tiny_onnx, x), rtol=0, atol=1e-4)


def _batch_counts(server) -> dict[int, int]:
    _, client = _http(server)
    stats = client.get_inference_statistics(NAME)
    return {int(r["batch_size"]): int(r["compute_infer"]["count"]) for r in stats["model_stats"][0]["batch_stats"]}


async def _concurrent(server, x: np.ndarray) -> list[np.ndarray]:
    """All of x's samples as separate requests, all in flight at once (one connection each), bounded in time."""
    import tritonclient.http as httpclient
    import tritonclient.http.aio as aio

    client = aio.InferenceServerClient(server.url, conn_limit=len(x))

    async def one(i: int) -> np.ndarray:
        item = httpclient.InferInput("images", [1, 3, SIZE, SIZE], "FP32")
        item.set_data_from_numpy(x[i:i + 1])
        result = await asyncio.wait_for(client.infer(NAME, [item]), 120)
        return result.as_numpy("logits")[0]

    try:
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(len(x)))), 300)
    finally:
        await client.close()


def test_loadtest_cli_reports_and_writes(served, tmp_path, capsys):
    import json

    from acmix_deploy.cli import main

    out = tmp_path / "lt"
    with pytest.raises(SystemExit) as done:
        main(["loadtest", "--url", f"http://{served.url}", "--served-model", NAME, "--concurrency", "1,4",
              "--duration", "1.5", "--warmup", "0.5", "--baseline-url", f"http://{served.url}",
              "-o", str(out / "r.json"), "--csv", str(out / "r.csv"), "--plot", str(out / "r.png")])
    assert done.value.code == 0
    report = json.loads((out / "r.json").read_text())
    assert report["format"] == "acmix-deploy-loadtest/1" and report["model"] == NAME
    assert [(r["concurrency"]) for r in report["levels"]] == [1, 1, 4, 4]  # main and baseline, level by level
    for level in report["levels"]:
        assert level["errors"] == 0 and level["completed"] > 0
        assert level["throughput"] == pytest.approx(level["completed"] / 1.5)
        assert level["p50_ms"] <= level["p90_ms"] <= level["p99_ms"]
        executed = sum(int(b) * n for b, n in level["batch_histogram"].items())
        assert abs(executed - level["completed"]) <= 4 + 0.1 * level["completed"]  # window edges
    assert (out / "r.csv").read_text().splitlines()[0].startswith("server,concurrency,throughput,p50_ms")
    assert (out / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "infer/s" in capsys.readouterr().out
    with pytest.raises(SystemExit) as failed:
        main(["loadtest", "--url", f"http://{served.url}", "--served-model", "no_such_model", "--concurrency", "1",
              "--duration", "0.5", "--warmup", "0"])
    assert failed.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no_such_model" in err and "\n" not in err
