"""`acmix-deploy serve` as a user runs it (a child process): every python-backend combination loads
and answers in the bundled tritonserver (--repo), an artifact served through the toolkit's runners
answers over HTTP and gRPC like ONNX Runtime, a taken port and a bad artifact are one line, SIGTERM
stops it gracefully and SIGKILL of the command still takes the server down. Each run checks that no
process and no port is left behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.serve.conftest import CLASSES, SIZE, group_gone, needs_server, ort_logits, port_free, small_onnx

pytestmark = needs_server
ROOT = Path(__file__).resolve().parents[2]


def _ports() -> list[int]:
    from acmix_deploy.serve.server import free_port

    ports: list[int] = []
    while len(ports) < 3:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def _env(tmp: Path) -> dict[str, str]:
    """The child's environment: this checkout first on PYTHONPATH, temporary files under the test's
    folder (a SIGKILLed command cannot remove its server copy; pytest's tmp_path does)."""
    return dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", TMPDIR=str(tmp))


def _start(args: list[str], ports: list[int], tmp: Path, timeout: float = 180.0) -> subprocess.Popen:
    env = _env(tmp)
    cmd = [sys.executable, "-m", "acmix_deploy.cli", "serve", *args, "--http-port", str(ports[0]),
           "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    import urllib.request

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"serve exited {proc.returncode}: {err.decode()[-500:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    _kill(proc)
    raise AssertionError("serve was not ready in time")


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def _server_pgid(ports: list[int]) -> int:
    """The tritonserver child listening on our HTTP port (its own process group)."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid,pgid,args"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "tritonserver" in line and f"--http-port={ports[0]}" in line:
            return int(line.split()[1])
    raise AssertionError("no tritonserver process found for this test's port")


def _assert_all_gone(pgid: int, ports: list[int], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not group_gone(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_gone(pgid), "tritonserver or a python stub is still running"
    for port in ports:
        assert port_free(port), f"port {port} is still taken"


def _infer(url: str, name: str, x: np.ndarray, dtype: str = "FP32") -> np.ndarray:
    import tritonclient.http as httpclient

    item = httpclient.InferInput("images", list(x.shape), dtype)
    item.set_data_from_numpy(x)
    return httpclient.InferenceServerClient(url, network_timeout=60).infer(name, [item]).as_numpy("logits")


def test_every_python_backend_combination_loads_and_answers(tmp_path):
    """fp32 / fp16 x dynamic / fixed batch, plus the ensemble, in the bundled tritonserver (serve --repo);
    then SIGTERM: exit 143, nothing left behind."""
    from acmix_deploy.serve.repository import RepoOptions, triton_repo

    files = {
        "fp32_dyn": small_onnx(tmp_path / "a.onnx", classes=CLASSES, name="fp32_dyn"),
        "fp16_dyn": small_onnx(tmp_path / "b.onnx", fp16_io=True, classes=CLASSES, name="fp16_dyn"),
        "fp32_b1": small_onnx(tmp_path / "c.onnx", batch=1, name="fp32_b1"),
        "fp16_b1": small_onnx(tmp_path / "d.onnx", batch=1, fp16_io=True, name="fp16_b1"),
    }
    repo = tmp_path / "repo"
    triton_repo([files["fp32_dyn"], files["fp16_dyn"]], repo, RepoOptions(backend="python", ensemble=True, threads=1))
    triton_repo([files["fp32_b1"], files["fp16_b1"]], tmp_path / "r2", RepoOptions(backend="python", threads=1))
    for folder in (tmp_path / "r2").iterdir():
        shutil.move(str(folder), repo / folder.name)
    ports = _ports()
    proc = _start(["--repo", str(repo)], ports, tmp_path)
    try:
        pgid = _server_pgid(ports)
        url = f"127.0.0.1:{ports[0]}"
        for name, path in files.items():
            fp16 = name.startswith("fp16")
            x = np.random.default_rng(1).standard_normal((1 if name.endswith("b1") else 3, 3, 8, 8)).astype(np.float16 if fp16 else np.float32)
            got = _infer(url, name, x, "FP16" if fp16 else "FP32")
            assert got.dtype == x.dtype
            np.testing.assert_allclose(got.astype(np.float32), ort_logits(path, x).astype(np.float32), rtol=0, atol=1e-3)
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(url)
        assert {m["name"] for m in client.get_model_repository_index() if m.get("state") == "READY"} == {
            *files, "fp32_dyn_preprocess", "fp32_dyn_classify", "fp16_dyn_preprocess", "fp16_dyn_classify"}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise
    assert proc.returncode == 143, err.decode()[-300:]
    _assert_all_gone(pgid, ports)
    assert list(tmp_path.glob("acmix-*")) == []  # a graceful stop removes the server copy


def test_serve_artifact_http_grpc_ports_and_kill(tiny_onnx, tmp_path):
    """The runner form: HTTP and gRPC outputs equal ONNX Runtime; a second serve on the same port is
    one line; SIGKILL of the command takes tritonserver and its stubs down (PR_SET_PDEATHSIG)."""
    import tritonclient.grpc as grpcclient

    from acmix_deploy.parity import compare

    ports = _ports()
    proc = _start([str(tiny_onnx), "--threads", "1", "--model-name", "digits_net"], ports, tmp_path)
    try:
        pgid = _server_pgid(ports)
        x = np.random.default_rng(5).standard_normal((4, 3, SIZE, SIZE)).astype(np.float32)
        reference = ort_logits(tiny_onnx, x)
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{ports[1]}")
        item = grpcclient.InferInput("images", list(x.shape), "FP32")
        item.set_data_from_numpy(x)
        via_grpc = client.infer("digits_net", [item], client_timeout=60).as_numpy("logits")
        client.close()
        for got in (_infer(f"127.0.0.1:{ports[0]}", "digits_net", x), via_grpc):
            result = compare(reference, got, name="serve")
            assert result.passed, result.line()
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{ports[2]}/metrics", timeout=5) as r:
            assert b"nv_inference_request_success" in r.read()
        taken = subprocess.run(
            [sys.executable, "-m", "acmix_deploy.cli", "serve", str(tiny_onnx), "--http-port", str(ports[0]),
             "--grpc-port", str(ports[1] + 0), "--metrics-port", str(ports[2])],
            capture_output=True, text=True, timeout=120, env=_env(tmp_path))
        assert taken.returncode == 2
        assert taken.stderr.strip() == f"error: port {ports[0]} on 127.0.0.1 is taken (--http-port); choose another"
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the command only: the server must follow it
        proc.communicate()
    _assert_all_gone(pgid, ports)
    from acmix_deploy.serve.server import remove_stale_copies

    assert len(list(tmp_path.glob("acmix-triton-*"))) == 1  # the killed command could not clean up ...
    remove_stale_copies(tmp_path)
    assert list(tmp_path.glob("acmix-triton-*")) == []  # ... the next start removes it


def test_serve_bad_artifact_is_one_line(tmp_path):
    env = _env(tmp_path)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    for target, message in ((tmp_path / "missing.onnx", "does not exist"), (bad, "is not an ONNX model")):
        run = subprocess.run([sys.executable, "-m", "acmix_deploy.cli", "serve", str(target)],
                             capture_output=True, text=True, timeout=120, env=env)
        assert run.returncode == 2
        assert run.stderr.startswith("error:") and message in run.stderr and run.stderr.count("\n") == 1


def test_serve_checkpoint_runs_the_pytorchdeploy_form(tmp_path):
    """A checkpoint is served through the torch-deploy runner: the same logits as the model's deploy
    form in this process, the class names as the label file; SIGINT stops it (exit 130)."""
    import torch

    from acmix_deploy.checkpoint import save_checkpoint
    from acmix_deploy.parity import compare
    from acmix_deploy.registry import create_model
    from acmix_deploy.runners import deploy_form

    torch.manual_seed(0)
    model = create_model("resnet_acmix26", width=8, k_att=3, num_classes=10, img_size=SIZE).eval()
    path = save_checkpoint(model, tmp_path / "digits.pth", classes=CLASSES)
    x = np.random.default_rng(2).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    with torch.inference_mode():
        reference = deploy_form(create_model(None, checkpoint=str(path)).eval()).eval()(torch.from_numpy(x)).numpy()
    ports = _ports()
    proc = _start([str(path), "--threads", "1"], ports, tmp_path)
    try:
        pgid = _server_pgid(ports)
        got = _infer(f"127.0.0.1:{ports[0]}", "digits", x)
        result = compare(reference, got, name="torch-deploy served")
        assert result.passed, result.line()
        import tritonclient.http as httpclient

        config = httpclient.InferenceServerClient(f"127.0.0.1:{ports[0]}").get_model_config("digits")
        assert config["parameters"]["runner"]["string_value"] == "torch-deploy"
        assert config["output"][0]["label_filename"] == "labels.txt"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise
    assert proc.returncode == 130
    _assert_all_gone(pgid, ports)
