"""gpu-check: the dry mode (--device cpu) end to end, an injected parity error without
onnx-graphsurgeon / onnxconverter-common, and --device cuda on a machine without a GPU.

The dry run shares one work folder with the subprocess run, so the tiny model is exported once
(the reused file is still checked against the reference by the ONNX Runtime rows).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from acmix_deploy.gpucheck.report import FAILED, NOT_AVAILABLE, OK, STATUSES, Report, Row, to_markdown
from acmix_deploy.gpucheck.run import CheckOptions, run_gpu_check

ROOT = Path(__file__).resolve().parents[2]
PATHS = {
    "torch-eager", "torch-deploy", "torch-compile", "onnx-export", "onnx-passes", "onnxruntime-cpu",
    "onnxruntime-cuda", "onnxruntime-trt", "onnx-fp16", "tensorrt-build", "tensorrt-run", "tensorrt-refusal",
    "timing", "train-steps",
}  # spelled out here on purpose: a path dropped from run.PATHS must fail this test
BUDGET = "600"  # the tests check every row; the 60 s default budget would skip rows on a loaded machine


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _has_trt() -> bool:
    from acmix_deploy.runners.trt_import import TENSORRT, TENSORRT_RTX, _try_import

    return any(_try_import(f)[0] is not None for f in (TENSORRT, TENSORRT_RTX))


def _fast_form() -> bool:
    from acmix_deploy.gpucheck.train_paths import fast_form

    return fast_form() is not None


def _rows(data: dict) -> dict[tuple[str, str], dict]:
    """(path, precision) -> row for the first subject of each (the dry plan has one parity model)."""
    out: dict[tuple[str, str], dict] = {}
    for row in data["rows"]:
        out.setdefault((row["path"], row["precision"]), row)
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gpucheck-work")


@pytest.fixture(scope="module")
def dry(tmp_path_factory, workdir):
    """The dry run, with the JSON read back after every row (a kill leaves a valid file)."""
    out = tmp_path_factory.mktemp("gpucheck")
    seen: list[tuple[int, bool]] = []

    def on_row(row: Row, report: Report) -> None:
        data = json.loads(report.json_path.read_text())
        seen.append((len(data["rows"]), data["complete"]))
        assert data["rows"][-1]["id"] == row.id

    options = CheckOptions(out_dir=out, device="cpu", budget_s=float(BUDGET), workdir=workdir)
    report = run_gpu_check(options, on_row=on_row)
    return report, json.loads(report.json_path.read_text()), seen


def test_dry_run_has_one_row_per_path_with_status_and_reason(dry):
    report, data, seen = dry
    assert data["schema"] == "acmix-deploy/gpu-check" and data["version"] == 1 and data["complete"] is True
    machine = data["machine"]
    assert {"gpus", "driver", "cuda", "torch", "onnxruntime", "onnxruntime_providers", "versions"} <= set(machine)
    assert machine["torch"] and machine["onnxruntime"] and "CPUExecutionProvider" in machine["onnxruntime_providers"]
    ids = [r["id"] for r in data["rows"]]
    assert len(ids) == len(set(ids))
    assert {r["path"] for r in data["rows"]} == PATHS
    for row in data["rows"]:
        assert row["status"] in STATUSES and row["reason"].strip(), row
    assert sum(data["counts"].values()) == len(ids) and data["counts"][FAILED] == 0 and not report.failed
    # written after every row, never marked complete before the end
    assert [n for n, _ in seen] == list(range(1, len(ids) + 1)) and not any(done for _, done in seen)
    markdown = report.markdown_path.read_text()
    assert markdown.count("\n| ") == len(ids) + 1 and "complete" in markdown.splitlines()[0]


def test_dry_run_cpu_analogues_are_ok_with_numbers(dry):
    _, data, _ = dry
    rows = _rows(data)
    for key in [("torch-eager", "fp32"), ("torch-deploy", "fp32"), ("torch-deploy", "fp16"), ("onnx-export", "fp32"),
                ("onnxruntime-cpu", "fp32"), ("torch-compile", "fp32")]:
        assert rows[key]["status"] == OK, rows[key]
    assert rows[("torch-eager", "fp32")]["numbers"]["ms"] > 0
    for key in [("torch-deploy", "fp32"), ("onnxruntime-cpu", "fp32")]:
        n = rows[key]["numbers"]
        assert 0 <= n["max_abs"] <= n["limit"] and n["limit"] == pytest.approx(1e-4 * n["ref_scale"])
        assert n["gate"] == "max abs <= 0.0001 x max|ref|" and rows[key]["reason"].startswith("PASSED")
    fp16 = rows[("torch-deploy", "fp16")]
    assert fp16["reason"].startswith("PASSED") and fp16["numbers"]["gate"] == "cosine >= 0.999"
    assert 0.999 <= fp16["numbers"]["cosine"] <= 1 and fp16["numbers"]["limit"] == pytest.approx(1e-2 * fp16["numbers"]["ref_scale"])
    assert "aot_eager" in rows[("torch-compile", "fp32")]["reason"]
    timing = [r for r in data["rows"] if r["path"] == "timing"]
    assert len(timing) == 4 and all(r["status"] == OK for r in timing)
    for r in timing:
        n = r["numbers"]
        assert n["timer"] == "perf_counter" and n["rounds"] >= 3 and n["model_ms"] > 0 and n["baseline_ms"] > 0
        assert n["ratio_q1"] <= n["ratio"] <= n["ratio_q3"]
    train = [r for r in data["rows"] if r["path"] == "train-steps"]
    ref = next(r for r in train if "reference form" in r["subject"])
    assert ref["status"] == OK and len(ref["numbers"]["losses"]) == 2 and ref["numbers"]["ms_per_step"] > 0
    fast = next(r for r in train if "fast form" in r["subject"])
    if not _fast_form():
        assert fast["status"] == NOT_AVAILABLE and "no fast training form" in fast["reason"]
    else:  # the same steps in train's fast form: same seed and data, so the first loss matches within rounding
        assert fast["status"] == OK and fast["numbers"]["form"] != "reference"
        assert fast["numbers"]["losses"][0] == pytest.approx(ref["numbers"]["losses"][0], rel=1e-4)


def test_dry_run_optional_backends_follow_what_is_installed(dry):
    _, data, _ = dry
    rows = _rows(data)
    assert rows[("onnx-passes", "fp32")]["status"] == (OK if _has("onnx_graphsurgeon") else NOT_AVAILABLE)
    assert rows[("onnx-fp16", "fp16")]["status"] == (OK if _has("onnxconverter_common") else NOT_AVAILABLE)
    if _has("onnxconverter_common"):
        assert rows[("onnxruntime-cpu", "fp16")]["status"] == OK
    for key in [("onnxruntime-cuda", "fp32"), ("onnxruntime-trt", "fp16")]:
        assert rows[key]["status"] == NOT_AVAILABLE and "this onnxruntime build has no" in rows[key]["reason"]
    assert rows[("tensorrt-run", "fp32")]["status"] == NOT_AVAILABLE
    if _has_trt():
        assert rows[("tensorrt-build", "fp32")]["status"] == OK and rows[("tensorrt-build", "fp32")]["numbers"]["bytes"] > 0
        refusal = rows[("tensorrt-refusal", "fp32")]
        assert refusal["status"] == OK and "cannot run on" in refusal["numbers"]["version"]
    else:
        assert rows[("tensorrt-build", "fp32")]["status"] == NOT_AVAILABLE


MISSING_ON_GPU_MACHINES = ("onnx_graphsurgeon", "onnxconverter_common", "tensorrt", "tensorrt_rtx")


def _shimmed_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter where the packages the lent GPU machines lack cannot be imported
    (a None entry in sys.modules makes `import` raise ImportError)."""
    shim = (f"import sys; sys.modules.update(dict.fromkeys({MISSING_ON_GPU_MACHINES!r})); "
            "from acmix_deploy.cli import main; main(sys.argv[1:])")
    return subprocess.run([sys.executable, "-c", shim, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env}, cwd=ROOT)


def test_injected_parity_error_fails_and_missing_packages_are_not_available(dry, workdir, tmp_path):
    """ACMIX_GPUCHECK_INJECT=torch-deploy moves one deploy-form logit: a failed row and exit 1; without
    onnx-graphsurgeon / onnxconverter-common / TensorRT (as on the lent GPU machines) the passes, fp16
    and engine rows say so and the rest still runs."""
    out = tmp_path / "report"
    proc = _shimmed_cli(["doctor", "--gpu-check", "--device", "cpu", "--quick", "-o", str(out), "--budget-s", BUDGET,
                         "--only", "torch,onnx,tensorrt", "--workdir", str(workdir)], {"ACMIX_GPUCHECK_INJECT": "torch-deploy"})
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "gpu_check.json").read_text())
    rows = _rows(data)
    deploy = rows[("torch-deploy", "fp32")]
    assert deploy["status"] == FAILED and deploy["reason"].startswith("FAILED deploy form fp32")
    assert deploy["numbers"]["max_abs"] > deploy["numbers"]["limit"]
    assert data["counts"][FAILED] == 1 and data["complete"] is True
    assert rows[("onnx-passes", "fp32")]["status"] == NOT_AVAILABLE
    assert rows[("onnx-passes", "fp32")]["reason"].startswith("onnx-graphsurgeon missing")
    assert rows[("onnx-fp16", "fp16")]["reason"].startswith("onnxconverter-common missing")
    assert rows[("onnxruntime-cpu", "fp16")]["status"] == NOT_AVAILABLE
    assert rows[("onnxruntime-cpu", "fp32")]["status"] == OK and rows[("torch-deploy", "fp16")]["status"] == OK
    assert rows[("torch-compile", "fp32")]["reason"].startswith("skipped: --quick")
    for path in ("tensorrt-build", "tensorrt-run", "tensorrt-refusal"):
        assert rows[(path, "fp32")]["reason"].startswith("no TensorRT runtime is installed"), rows[(path, "fp32")]
    assert {r["path"] for r in data["rows"]} == PATHS  # unselected paths are rows too
    assert all(r["reason"] == "skipped: not selected by --only torch,onnx,tensorrt" for r in data["rows"]
               if r["path"].startswith(("timing", "train")))
    assert "1 failed" in proc.stdout and "Traceback" not in proc.stderr


def test_cuda_device_without_a_gpu_reports_every_row_not_available(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    out = tmp_path / "cuda"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cuda", "-o", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "gpu_check.json").read_text())
    assert data["complete"] and {r["path"] for r in data["rows"]} == PATHS
    assert all(r["status"] == NOT_AVAILABLE and r["reason"].startswith("no CUDA device") for r in data["rows"])
    assert data["machine"]["gpus"] == [] and data["options"]["budget_s"] == 300


def test_bad_options_are_one_line_errors(tmp_path):
    run = [sys.executable, "-m", "acmix_deploy.cli", "doctor"]
    bad_device = subprocess.run(run + ["--gpu-check", "--device", "tpu", "-o", str(tmp_path)], capture_output=True, text=True)
    assert bad_device.returncode == 2 and bad_device.stderr.strip() == "error: --device must be cpu or cuda, got 'tpu'"
    for option in (["--quick"], ["--device", "cpu"]):  # without --gpu-check they would be ignored
        stray = subprocess.run(run + option, capture_output=True, text=True)
        assert stray.returncode == 2 and stray.stderr.strip().startswith("error: -o, --quick"), option
    only = subprocess.run(run + ["--gpu-check", "--device", "cpu", "--only", "gpu", "-o", str(tmp_path)],
                          capture_output=True, text=True)
    assert only.returncode == 2 and only.stderr.strip().startswith("error: --only gpu names no path; paths: torch-eager")
    assert not (tmp_path / "gpu_check.json").exists()


def test_report_rejects_unknown_status_and_renders_markdown(tmp_path):
    report = Report(tmp_path, {"device": "cpu", "quick": False, "budget_s": 60}, {"gpus": []})
    with pytest.raises(ValueError):
        report.add(Row("x", "fp32", "m", "cpu", "skipped", "why"))
    report.add(Row("timing", "fp32", "a | b", "cpu", OK, "r",
                   {"model_ms": 2.0, "baseline_ms": 1.0, "ratio": 2.0}))
    text = to_markdown(json.loads(report.json_path.read_text()))
    assert "| timing | fp32 | a \\| b | cpu | ok | 2.000 / 1.000 ms = 2.00x | r |" in text


def test_fp16_gate_is_cosine_and_decisive_top1():
    """fp16 against the fp32 reference passes on cosine >= 0.999 even past 1e-2 x max|ref| (as
    ResNet-ACmix-50 at 224 px does under autocast), and fails below it or on a decisive top-1 flip."""
    import numpy as np

    from acmix_deploy.gpucheck.core import CheckFailed, precision_outcome

    ref = np.array([[10.0, 0.0, -3.0, 1.0], [0.0, 8.0, 1.0, -2.0]], np.float32)
    near = ref + np.array([[0.2, -0.1, 0.1, 0.0], [0.0, 0.15, -0.1, 0.1]], np.float32)  # 2e-2 x max|ref|
    line, numbers = precision_outcome(ref, near, "fp16", "fp16")
    assert line.startswith("PASSED") and numbers["max_abs"] > numbers["limit"] and numbers["cosine"] >= 0.999
    with pytest.raises(CheckFailed, match="^FAILED fp16: .*; gate cosine >= 0.999") as failed:
        precision_outcome(ref, ref + np.array([[0, 3.0, 0, 0], [0, 0, 0, 0]], np.float32), "fp16", "fp16")
    assert 0.9 < failed.value.numbers["cosine"] < 0.999 and failed.value.numbers["gate"] == "cosine >= 0.999"
    with pytest.raises(CheckFailed, match="FAILED fp32"):
        precision_outcome(ref, near, "fp32", "fp32")


def test_inductor_without_a_c_compiler_is_not_available(monkeypatch):
    from acmix_deploy.gpucheck.torch_paths import compiler_missing

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CC", raising=False)
    assert compiler_missing("inductor").startswith("torch.compile (inductor) needs a C compiler")
    assert compiler_missing("aot_eager") is None
    monkeypatch.setenv("CC", "/usr/bin/gcc")
    assert compiler_missing("inductor") is None
