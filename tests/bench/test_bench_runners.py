import functools

import numpy as np
import pytest
import torch

from tests.bench import bench_standins as S
from acmix_deploy.bench.sources import ModelSource
from acmix_deploy.parity import FP32_TOL, compare
from acmix_deploy.runners import (
    BackendUnavailable,
    Runner,
    RunnerOptions,
    canonical_backend,
    create_runner,
    cuda_available,
    make_images,
)

OPTS = RunnerOptions(input_size=(16, 16), threads=1, spinning=False)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    src = S.resolver("tiny_acmix")
    src.require_onnx(tmp_path_factory.mktemp("onnx"))
    return src


def test_backend_names_and_aliases():
    assert canonical_backend("torch") == "torch-eager"
    assert canonical_backend(" ORT ") == "onnxruntime"
    assert canonical_backend("trt") == "tensorrt"
    with pytest.raises(ValueError, match="choose from"):
        canonical_backend("tflite")


def test_images_are_deterministic_per_batch():
    a, b = make_images(2, (8, 8)), make_images(2, (8, 8))
    assert a.shape == (2, 3, 8, 8) and a.dtype == np.float32 and np.array_equal(a, b)
    assert not np.array_equal(make_images(1, (8, 8))[0], make_images(2, (8, 8), seed=1)[0])


def test_torch_and_onnxruntime_runners_compute_the_same_model(source):
    outs = {}
    for backend in ("torch-eager", "onnxruntime"):
        runner = create_runner(backend, source, OPTS)
        assert isinstance(runner, Runner) and runner.device == "cpu"
        x = runner.prepare(3)
        out = runner(x)
        outs[backend] = out.numpy() if isinstance(out, torch.Tensor) else out[0]
        runner.close()
    assert outs["torch-eager"].shape == (3, 10)
    assert compare(outs["torch-eager"], outs["onnxruntime"], FP32_TOL).passed


def test_torch_deploy_uses_the_deploy_form(source):
    runner = create_runner("torch-deploy", source, OPTS)
    assert runner._model.deployed is True
    runner.close()


def test_torch_deploy_of_a_registry_model_is_its_deploy_form_and_computes_the_same():
    """Registry models have no .deploy(): torch-deploy goes through acmix_deploy.nn.switch_to_deploy."""
    from acmix_deploy.nn.deploy import ACmixDeploy
    from acmix_deploy.registry import create_model

    model = create_model("resnet_acmix26", img_size=32, width=16, k_att=3).eval()
    src = ModelSource(label="r", torch_factory=lambda: model)  # switch_to_deploy works on a copy
    opts = RunnerOptions(input_size=(32, 32), threads=1, spinning=False)
    eager, deploy = create_runner("torch-eager", src, opts), create_runner("torch-deploy", src, opts)
    assert any(isinstance(m, ACmixDeploy) for m in deploy._model.modules())
    assert not any(isinstance(m, ACmixDeploy) for m in eager._model.modules())
    x = eager.prepare(2)
    with torch.no_grad():
        assert compare(eager(x).numpy(), deploy(deploy.prepare(2)).numpy(), FP32_TOL).passed
    eager.close()
    deploy.close()


def test_backends_that_need_something_else_say_what(source, tmp_path):
    onnx_only = ModelSource(label="x", onnx_path=source.onnx_path)
    with pytest.raises(BackendUnavailable, match="PyTorch model"):
        create_runner("torch-eager", onnx_only, OPTS)
    torch_only = ModelSource(label="x", torch_factory=functools.partial(S.make_tiny))
    with pytest.raises(BackendUnavailable, match="ONNX model"):
        create_runner("onnxruntime", torch_only, OPTS)
    with pytest.raises(BackendUnavailable, match="engine file" if cuda_available() else "needs a CUDA GPU"):
        create_runner("tensorrt", source, OPTS)  # without a GPU that is the reason, engine file or not
    fake_engine = tmp_path / "m.engine"
    fake_engine.write_bytes(b"\0")
    if not cuda_available():
        with pytest.raises(BackendUnavailable, match="CUDA GPU"):
            create_runner("tensorrt", ModelSource(label="x", engine_path=fake_engine), OPTS)


def test_missing_onnxruntime_providers_are_unavailable(source):
    import onnxruntime as ort

    for backend, provider in (("onnxruntime-cuda", "CUDAExecutionProvider"), ("onnxruntime-trt", "TensorrtExecutionProvider")):
        if provider in ort.get_available_providers():
            continue
        with pytest.raises(BackendUnavailable, match=provider):
            create_runner(backend, source, OPTS)


def test_fixed_batch_onnx_refuses_other_batches(tmp_path):
    import onnx

    path = S.export(S.make_tiny(), tmp_path / "fixed.onnx", 16)
    proto = onnx.load(str(path))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    proto.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(proto, str(path))
    runner = create_runner("onnxruntime", ModelSource(label="f", onnx_path=path), OPTS)
    runner.prepare(1)
    with pytest.raises(ValueError, match="fixed batch of 1"):
        runner.prepare(2)
    runner.close()


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
def test_torch_runner_on_cuda_with_cuda_graph(source):
    opts = RunnerOptions(input_size=(16, 16), device="cuda", cuda_graph=True)
    runner = create_runner("torch-eager", source, opts)
    x = runner.prepare(2)
    assert x.is_cuda
    out = runner(x).cpu().numpy()
    ref = S.make_tiny()(x.cpu()).detach().numpy()
    assert compare(ref, out, 1e-3).passed
    runner.close()


def test_engine_runner_errors_become_unavailable_reasons(monkeypatch, tmp_path):
    from acmix_deploy import runners
    from acmix_deploy.runners import engine as engine_runner
    from acmix_deploy.errors import AcmixError

    class NoTensorRT:
        def __init__(self, path):
            raise AcmixError("TensorRT is not installed (pip install tensorrt)")

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    monkeypatch.setattr(runners, "cuda_available", lambda: True)
    monkeypatch.setattr(engine_runner, "_engine_runner_class", lambda: NoTensorRT)
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        create_runner("tensorrt", ModelSource(label="m", engine_path=engine), OPTS)
