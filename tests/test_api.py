"""The timm-like top level: `import acmix_deploy as ad` exposes the whole flow, lazily.

Checked here: the import stays light (a fresh interpreter), no public name is shadowed by a
submodule once every submodule is imported, and each function does its real job on one small
registry model (one chain, so the export is shared).
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import acmix_deploy as ad

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


@pytest.mark.parametrize("argv", [["--help"], ["export", "--help"], ["build-trt", "--help"], ["bench", "--help"]])
def test_help_imports_no_heavy_backend(argv):
    code = (
        "import json, sys\n"
        "from acmix_deploy.cli import main\n"
        f"sys.argv = ['acmix-deploy', *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "COLUMNS": "120"})
    assert "Usage" in out.stdout and len(out.stdout.splitlines()) > 5
    assert json.loads(out.stderr.strip().splitlines()[-1]) == []


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


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_api_example() -> str:
    """The python block of README's "Python API" section, verbatim."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict:
    """README's example, run as written in a temporary folder; its variables for the tests."""
    root = tmp_path_factory.mktemp("api")
    namespace: dict = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        exec(compile(readme_api_example(), "README.md#python-api", "exec"), namespace)
    namespace["root"] = root
    return namespace


def test_create_list_and_card(chain):
    assert {"resnet_acmix26", "swin_acmix_t", "san_acmix10", "pvt_acmix_t"} <= set(ad.list_models())
    assert ad.get_card("resnet_acmix50").arch == "resnet"
    import torch

    with torch.no_grad():
        logits = chain["model"].eval()(torch.zeros(2, 3, 64, 64))
    assert tuple(logits.shape) == (2, 10)


def test_export_optimize_and_precision(chain):
    root = chain["root"]
    exported = chain["exported"]
    assert exported.parity and all(line.startswith("PASSED") for line in exported.parity)
    assert exported.bytes == (root / "r26.onnx").stat().st_size > 10_000
    report = chain["report"]
    assert report.parity and all(line.startswith("PASSED") for line in report.parity)
    assert report.ops_after["Conv"] < report.ops_before["Conv"]  # stage-I projections fused
    assert sum(report.ops_after.values()) < sum(report.ops_before.values())
    assert chain["fp16"].report.passed and chain["fp16"].report.cosine >= 0.999
    assert chain["int8"].report.passed and chain["int8"].calib_count == 64
    for name in ("r26.opt.onnx", "r26.fp16.onnx", "r26.int8.onnx"):
        assert (root / name).stat().st_size > 5_000


def test_benchmark_and_profile(chain):
    rows = [row for row in chain["bench"].rows if row.status == "ok"]
    assert rows and all(row.stats.median_ms > 0 for row in rows)
    ok = [r for r in chain["profile"].results if r.status == "ok"]
    assert ok and ok[0].kernel_ms > 0 and len(ok[0].nodes) > 10


def test_evaluate_artifacts(chain):
    report = chain["scores"]
    assert report.evaluated == report.total == 360
    assert [Path(r.path).name for r in report.results] == ["r26.onnx", "r26.fp16.onnx", "r26.int8.onnx"]
    for result in report.results:
        assert result.available and 0 <= result.correct1 <= result.correct5 <= 360
    fp32, fp16, _ = report.results  # random weights: the fp16 copy predicts what fp32 predicts
    agree = float(np.mean(fp32.top1_pred == fp16.top1_pred))
    assert agree >= 0.95


def test_build_engine_needs_tensorrt_or_builds(chain, tmp_path):
    try:
        import tensorrt_rtx  # noqa: F401
    except ImportError:
        with pytest.raises(ad.AcmixError, match="(?i)tensorrt"):
            ad.build_engine(chain["root"] / "r26.fp16.onnx", tmp_path / "m.engine", max_batch=1, opt_batch=1)
        return
    result = ad.build_engine(chain["root"] / "r26.fp16.onnx", tmp_path / "m.engine", max_batch=1, opt_batch=1, runtime="tensorrt-rtx")
    assert Path(result.path).stat().st_size > 10_000


def test_train_model_one_epoch(chain, tmp_path):
    digits = chain["root"] / "digits"
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
