"""The runner interface on a real small export (resnet_acmix26, dynamic batch, graph passes): every
CPU runner agrees with the PyTorch reference under the tolerance rule, from a path and from bytes;
input metadata, batch limits, the context manager and the thread-safety attribute."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from acmix_deploy.errors import AcmixError
from acmix_deploy.export import INPUT_NAME, LOGITS_NAME, reference_and_deploy, verification_images
from acmix_deploy.parity import FP32_TOL, compare
from acmix_deploy.runners import OnnxRuntimeRunner, RunnerOptions, TensorRTRunner, TorchRunner
from tests.export.conftest import small_export_kwargs

NAME = "resnet_acmix26"


@pytest.fixture(scope="module")
def case(small_export):
    """(export result, reference model, 3 seeded images, the reference logits)."""
    import torch

    result = small_export(NAME)
    kwargs = small_export_kwargs(NAME)
    reference = reference_and_deploy(NAME, build={"img_size": kwargs["img_size"], **kwargs["overrides"]})[0]
    images = verification_images(reference.card, kwargs["img_size"], 3, seed=5)
    with torch.no_grad():
        logits = reference(torch.from_numpy(images)).numpy()
    return result, reference, images, logits


@pytest.mark.parametrize("source", ["path", "bytes"])
def test_onnxruntime_runner_matches_torch(case, source):
    result, _, images, logits = case
    model = result.path if source == "path" else result.path.read_bytes()
    with OnnxRuntimeRunner(model, options=RunnerOptions(threads=1), optimization="disable") as runner:
        meta = runner.input_metadata()
        assert list(meta) == [INPUT_NAME] and meta[INPUT_NAME].shape == (None, 3, images.shape[2], images.shape[3])
        assert meta[INPUT_NAME].dtype == np.float32 and runner.batch_limits() == (1, None)
        out = runner.infer({INPUT_NAME: images})
        assert runner.thread_safe and runner.active
    assert not runner.active and list(out) == [LOGITS_NAME]
    res = compare(logits, out[LOGITS_NAME], FP32_TOL, name="ort")
    assert res.passed and res.samples == 3 and res.max_abs <= FP32_TOL * res.ref_scale, res.line()


@pytest.mark.parametrize("backend", ["torch-eager", "torch-deploy"])
def test_torch_runners_match_torch(case, backend):
    _, reference, images, logits = case
    size = (images.shape[2], images.shape[3])
    with TorchRunner(reference, backend, RunnerOptions(input_size=size, threads=1)) as runner:
        assert runner.thread_safe and runner.input_metadata()[INPUT_NAME].shape == (None, 3, *size)
        out = runner.infer(images)
    res = compare(logits, out[LOGITS_NAME], FP32_TOL, name=backend)
    assert res.passed and res.top1_agreement == 1.0, res.line()


def test_chunked_inference_and_threads_agree(case):
    """One ORT runner called from 3 threads at once gives each thread the single-threaded answer;
    infer_chunked over 2-image chunks equals one call."""
    result, _, images, logits = case
    runner = OnnxRuntimeRunner(result.path, options=RunnerOptions(threads=1)).activate()
    whole = runner.infer(images)[LOGITS_NAME]
    np.testing.assert_array_equal(runner.infer_chunked(images, chunk=2)[LOGITS_NAME], whole)
    got: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, runner.infer(images[i:i + 1])[LOGITS_NAME]))
               for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose(np.concatenate([got[i] for i in range(3)]), whole, rtol=0, atol=1e-5 * np.abs(whole).max())
    runner.deactivate()


def test_thread_safety_attribute_and_inactive_refusal(case):
    result, reference, images, _ = case
    assert OnnxRuntimeRunner.thread_safe is True and TensorRTRunner.thread_safe is False
    assert TorchRunner(reference, "torch-compile").thread_safe is False
    assert TorchRunner(reference, "torch-eager", RunnerOptions(cuda_graph=True)).thread_safe is False
    with pytest.raises(AcmixError, match="not active"):
        OnnxRuntimeRunner(result.path).infer(images)
    with pytest.raises(AcmixError, match="ONNX Runtime cannot load the model"):
        OnnxRuntimeRunner(b"not an onnx model").activate()


def test_import_runners_loads_no_backend():
    code = ("import sys, acmix_deploy.runners; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
