"""The timm-like top level: `import acmix_deploy as ad` exposes the whole flow, lazily.

Checked here: the import stays light (a fresh interpreter), no public name is shadowed by a
submodule once every submodule is imported, and each function does its real job on one small
registry model (one chain, so the export is shared).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import acmix_deploy as ad
from tests.conftest import small_overrides

HEAVY = ("torch", "onnxruntime", "tensorrt", "tensorrt_rtx")
FUNCTIONS = sorted(name for name in ad.__all__ if name not in {"__version__"})


def test_import_and_dir_import_no_heavy_backend():
    code = (
        "import json, sys, acmix_deploy as ad\n"
        "names = dir(ad)\n"
        f"print(json.dumps({{'names': names, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    report = json.loads(out)
    assert report["heavy"] == []
    assert set(FUNCTIONS) <= set(report["names"])


def _all_submodules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(ad.__path__, prefix="acmix_deploy."):
        if ".serve.templates" in info.name:  # run inside Triton's python backend, not importable here
            continue
        names.append(info.name)
    return names


def test_no_public_name_is_shadowed_by_a_submodule():
    submodules = _all_submodules()
    assert len(submodules) > 60
    for name in submodules:
        importlib.import_module(name)
    top_level_modules = {n.split(".")[1] for n in submodules}
    assert not top_level_modules & set(FUNCTIONS)
    for name in FUNCTIONS:
        value = getattr(ad, name)
        assert not isinstance(value, types.ModuleType), name
        assert callable(value), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        getattr(ad, "nope")


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, Path]:
    """export -> optimize -> fp16 / int8 through the top level, at 64 px."""
    root = tmp_path_factory.mktemp("api")
    name = "resnet_acmix26"
    small = small_overrides(name)
    size = small.pop("img_size")
    exported = ad.export_onnx(name, img_size=size, output=root / "m.onnx", overrides=small, optimize=False)
    paths = {"onnx": Path(exported.path), "exported": exported}
    report = ad.optimize(paths["onnx"], root / "m.opt.onnx", latency_runs=2)
    paths["optimized"] = root / "m.opt.onnx"
    paths["optimize_report"] = report
    paths["fp16"] = Path(ad.convert_fp16(paths["optimized"], root / "m.fp16.onnx", samples=4, holdout=8).path)
    paths["int8"] = Path(
        ad.quantize_int8(paths["optimized"], root / "m.int8.onnx", calib_size=16, holdout=16, min_agreement=0.5).path
    )
    return paths


def test_create_list_and_card():
    assert {"resnet_acmix26", "swin_acmix_t", "san_acmix10", "pvt_acmix_t"} <= set(ad.list_models())
    assert ad.get_card("resnet_acmix50").arch == "resnet"
    import torch

    small = small_overrides("resnet_acmix26")
    model = ad.create_model("resnet_acmix26", **small).eval()
    with torch.no_grad():
        logits = model(torch.zeros(2, 3, small["img_size"], small["img_size"]))
    assert tuple(logits.shape) == (2, small["num_classes"])


def test_export_optimize_and_precision(chain):
    exported = chain["exported"]
    assert exported.parity and all(line.startswith("PASSED") for line in exported.parity)
    assert exported.bytes == chain["onnx"].stat().st_size > 10_000
    report = chain["optimize_report"]
    assert report.parity and all(line.startswith("PASSED") for line in report.parity)
    assert report.ops_after["Conv"] < report.ops_before["Conv"]  # stage-I projections fused
    assert sum(report.ops_after.values()) < sum(report.ops_before.values())
    for key in ("fp16", "int8"):
        assert chain[key].is_file() and chain[key].stat().st_size > 5_000


def test_benchmark_and_profile(chain):
    result = ad.benchmark(onnx=chain["optimized"], backends=["onnxruntime"], warmup_s=None, warmup_iterations=1,
                          iterations=5, memory=False, threads=1)
    rows = [row for row in result.rows if row.stats is not None]
    assert rows and all(row.stats.median_ms > 0 for row in rows)
    report = ad.profile_model(onnx=chain["optimized"], warmup=1, iterations=2, threads=1)
    ok = [r for r in report.results if r.status == "ok"]
    assert ok and ok[0].kernel_ms > 0 and len(ok[0].nodes) > 10


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("api-digits") / "digits"
    importlib.import_module("acmix_deploy.train.digits").write_digits(data, size=16)
    return data


def test_evaluate_artifacts(chain, digits):
    data = digits
    report = ad.evaluate_artifacts([chain["optimized"]], data / "val")
    assert report.evaluated == report.total == 360
    result = report.results[0]
    assert result.available and 0 <= result.correct1 <= result.correct5 <= 360


def test_build_engine_needs_tensorrt_or_builds(chain, tmp_path):
    try:
        import tensorrt_rtx  # noqa: F401
    except ImportError:
        with pytest.raises(ad.AcmixError, match="(?i)tensorrt"):
            ad.build_engine(chain["optimized"], tmp_path / "m.engine", max_batch=1, opt_batch=1)
        return
    result = ad.build_engine(chain["optimized"], tmp_path / "m.engine", max_batch=1, opt_batch=1, runtime="tensorrt-rtx")
    assert Path(result.path).stat().st_size > 10_000


def test_train_model_one_epoch(digits, tmp_path):
    from tests.train.conftest import tiny_options

    data = tmp_path / "few"  # 4 images per class: one epoch is 2 full batches of 16 (the last, partial one is dropped)
    for split in ("train", "val"):
        for folder in sorted((digits / split).iterdir()):
            (data / split / folder.name).mkdir(parents=True)
            for image in sorted(folder.iterdir())[:4]:
                shutil.copy(image, data / split / folder.name / image.name)
    config, _ = importlib.import_module("acmix_deploy.train.loop").prepare(tiny_options(data, tmp_path / "run"))
    assert isinstance(config, ad.TrainConfig)
    from rich.console import Console

    result = ad.train_model(config, console=Console(quiet=True), show_progress=False, stop_after=1)
    assert result.epochs_done == 1 and result.train_images == 40
    assert len(result.step_losses) == 2 and np.isfinite(result.step_losses).all()
