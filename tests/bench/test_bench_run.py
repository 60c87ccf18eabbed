import numpy as np
import pytest

from tests.bench import bench_standins as S
from acmix_deploy.runners import ort
from acmix_deploy import workspace as ws
from acmix_deploy.bench import run
from acmix_deploy.bench.run import bench
from acmix_deploy.bench.sources import ModelSource
from acmix_deploy.bench.stats import paired_ratio
from acmix_deploy.errors import AcmixError
from acmix_deploy.runners import create_runner

FAST = {"iterations": 5, "warmup_iterations": 1, "memory": False, "threads": 1, "resolver": S.resolver}


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    return S.export(S.make_tiny(), tmp_path_factory.mktemp("m") / "tiny.onnx", 16)


def test_model_vs_baseline_interleaved_with_ratios():
    r = bench(model="tiny_acmix", baseline="tiny_plain", backends=["onnxruntime", "torch", "tensorrt"], batches=[1, 2], **FAST)
    assert r.interleaved and not r.ort_spinning
    assert r.config.backends == ("onnxruntime", "torch-eager", "tensorrt")
    assert len(r.rows) == 3 * 2 * 2
    for backend in ("onnxruntime", "torch-eager"):
        for batch in (1, 2):
            m, b = r.get(backend, batch), r.get(backend, batch, "baseline")
            assert m.ok and b.ok and m.stats.iterations == 5 == b.stats.iterations
            assert m.median_ratio == pytest.approx(m.stats.median_ms / b.stats.median_ms)
            assert m.ratio == pytest.approx(paired_ratio(m.samples_ms, b.samples_ms))
            assert b.ratio is None and b.median_ratio is None
            assert len(m.samples_ms) == 5 and m.stats.median_ms == pytest.approx(float(np.median(m.samples_ms)))
            assert m.stats.throughput_ips == pytest.approx(batch * 1000 / m.stats.median_ms)
    trt = [row for row in r.rows if row.backend == "tensorrt"]
    assert len(trt) == 4 and all(
        row.status == "unavailable" and ("engine" in row.reason or "needs a CUDA GPU" in row.reason) for row in trt
    )
    assert r.models["model"]["label"] == "tiny_acmix" and r.models["baseline"]["label"] == "tiny_plain"
    cmd = r.config.command()
    assert "--baseline tiny_plain" in cmd and "--batch 1,2" in cmd and "--threads 1" in cmd and "--no-memory" in cmd


def test_interleaved_onnxruntime_sessions_are_created_with_spinning_off(monkeypatch):
    # r.ort_spinning is what bench() reports; check that the sessions it timed really had spinning off
    created, sessions = [], []
    real_make_session = ort.make_session

    def recording_create_runner(backend, source, options):
        created.append((backend, source.label, options.spinning))
        return create_runner(backend, source, options)

    def recording_make_session(*args, **kwargs):
        sessions.append(real_make_session(*args, **kwargs))
        return sessions[-1]

    monkeypatch.setattr(run, "create_runner", recording_create_runner)
    monkeypatch.setattr(ort, "make_session", recording_make_session)
    r = bench(model="tiny_acmix", baseline="tiny_plain", backends=["onnxruntime"], batches=[1], **FAST)
    assert r.interleaved and not r.ort_spinning and all(row.ok for row in r.rows)
    assert created == [
        ("onnxruntime", "tiny_acmix", False),
        ("onnxruntime", "tiny_plain", False),
    ]
    assert len(sessions) == 2
    for session in sessions:
        assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_without_baseline_backends_run_alone_with_spinning():
    r = bench(model="tiny_acmix", backends=["ort"], batches=[1], **FAST)
    assert not r.interleaved and r.ort_spinning
    assert [row.role for row in r.rows] == ["model"] and r.rows[0].ratio is None


def test_shift_override_reaches_the_model_only():
    r = bench(model="tiny_acmix", shift="tensor", baseline="tiny_acmix", backends=["torch"], batches=[1], **FAST)
    assert r.models["model"]["label"] == "tiny_acmix[shift=tensor]"
    assert r.models["model"]["overrides"] == {"shift": "tensor"} and r.models["baseline"]["overrides"] == {}


def test_onnx_input_defaults_to_onnxruntime_and_torch_is_unavailable(onnx_file):
    r = bench(onnx=onnx_file, **FAST)
    assert r.config.backends == ("onnxruntime",) and r.rows[0].ok
    r = bench(onnx=onnx_file, backends=["torch"], **FAST)
    assert r.rows[0].status == "unavailable" and "PyTorch model" in r.rows[0].reason


def test_a_broken_backend_is_a_failed_row_and_the_others_run(onnx_file):
    def resolver(name, img_size=None, shift=None):
        return ModelSource(label=name, torch_factory=S.make_broken, onnx_path=onnx_file,
                           input_size=(16, 16))  # fmt: skip

    r = bench(model="broken", backends=["torch", "onnxruntime"], batches=[1], **{**FAST, "resolver": resolver})
    torch_row, ort_row = r.get("torch-eager", 1), r.get("onnxruntime", 1)
    assert torch_row.status == "failed" and torch_row.reason == "broken stand-in"
    assert ort_row.ok


def test_newest_workspace_file_is_used_and_named(onnx_file, tmp_path):
    ws.record(ws.ONNX, "tiny", onnx_file, workspace=tmp_path)
    said = []
    r = bench(workspace=tmp_path, progress=said.append, **FAST)
    assert r.rows[0].ok and r.config.onnx == str(onnx_file.resolve())
    assert any(str(onnx_file.resolve()) in n for n in r.notes) and any("no input given" in s and "newest" in s for s in said)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"duration_s": 1.0, "iterations": 3}, "either --duration-s or --iterations"),
        ({"batches": [0]}, "batch sizes must be >= 1"),
        ({"batches": []}, "at least one batch"),
        ({"backends": ["tflite"]}, "unknown backend"),
        ({"shift": "diagonal"}, "--shift must be"),
        ({"threads": 0}, "--threads"),
        ({"device": "tpu"}, "--device"),
        ({"model": "nope"}, "unknown model"),
        ({"onnx": "missing.onnx"}, "missing.onnx does not exist"),
    ],
)
def test_bad_input_is_one_line_error(kwargs, message, tmp_path):
    args = {"model": "tiny_acmix", **FAST, **kwargs}
    if "onnx" in kwargs:
        args.pop("model")
    with pytest.raises(AcmixError, match=message):
        bench(**args)


def test_a_file_that_is_not_onnx_is_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(AcmixError, match="not (an|a readable) ONNX"):
        bench(onnx=bad, **FAST)


def test_empty_workspace_says_what_to_do(tmp_path):
    with pytest.raises(AcmixError, match="acmix-deploy export"):
        bench(workspace=tmp_path, **FAST)


def test_peak_memory_is_measured_in_a_child_process(onnx_file):
    from acmix_deploy.bench.memory import peak_rss_mb

    r = bench(onnx=onnx_file, batches=[2], **{**FAST, "memory": True})
    mem = r.rows[0].memory
    assert r.rows[0].memory_error is None and mem is not None
    assert 0 < mem.base_rss_mb < mem.peak_rss_mb
    # the child only loaded numpy + onnxruntime: far less than this test process (torch and more)
    assert mem.peak_rss_mb < peak_rss_mb()
    assert mem.gpu_peak_mb is None


def test_peak_memory_of_a_torch_backend():
    r = bench(model="tiny_acmix", backends=["torch"], batches=[1], **{**FAST, "memory": True})
    mem = r.rows[0].memory
    assert r.rows[0].memory_error is None and mem.peak_rss_mb > mem.base_rss_mb > 0


def test_shift_modes_match_the_model_package():
    from acmix_deploy.bench.sources import SHIFTS
    from acmix_deploy.nn.shift import SHIFT_MODES

    assert set(SHIFTS) == set(SHIFT_MODES)


def test_a_bad_shift_is_an_error_for_bench_and_profile_alike():
    """Checked where the target is resolved, so the Python API fails the same way as the CLI."""
    from acmix_deploy.bench.profile import profile

    for fn in (bench, profile):
        with pytest.raises(AcmixError, match="--shift must be one of group, fixed, tensor"):
            fn(model="tiny_acmix", shift="diagonal")


def test_every_lazy_package_name_is_the_object_not_a_submodule():
    """`from acmix_deploy.bench import X` gives the function or class, also after every submodule
    was imported (a submodule of the same name would shadow a lazy export)."""
    import importlib
    import pkgutil
    from types import ModuleType

    import acmix_deploy.bench as bench_pkg

    for info in pkgutil.iter_modules(bench_pkg.__path__):
        importlib.import_module(f"acmix_deploy.bench.{info.name}")
    for name in bench_pkg.__all__:
        assert not isinstance(getattr(bench_pkg, name), ModuleType), name


def test_runner_warnings_become_notes(monkeypatch):
    """A runner's warnings (e.g. an engine built on another GPU) are reported with the result."""

    def warning_runner(backend, source, options):
        runner = create_runner(backend, source, options)
        runner.warnings.append(f"built for another machine ({source.label})")
        return runner

    monkeypatch.setattr(run, "create_runner", warning_runner)
    r = bench(model="tiny_acmix", baseline="tiny_plain", backends=["onnxruntime"], batches=[1], **FAST)
    assert "onnxruntime tiny_acmix: built for another machine (tiny_acmix)" in r.notes
    assert "onnxruntime tiny_plain: built for another machine (tiny_plain)" in r.notes
