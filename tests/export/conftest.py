"""Small exports shared by the export and TensorRT tests (each model is exported once per session)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from acmix_deploy.export import ExportResult, export_onnx
from tests.conftest import small_overrides

# How each registered model is exported in the tests: small widths and resolutions, every option
# exercised by one model or another (dynamic batch, fixed batch > 1, features, optimize).
EXPORT_OPTIONS: dict[str, dict[str, Any]] = {
    "resnet_acmix26": {"optimize": True, "dynamic_batch": True},
    "resnet_acmix38": {},
    "resnet_acmix50": {"features": True},
    "swin_acmix_t": {},
    "swin_acmix_s": {"optimize": True},
    "resnet26": {},
    "resnet38": {"batch": 2},
    "resnet50": {},
    "swin_t": {},
    "swin_s": {},
    "pvt_t": {},
    "pvt_s": {"batch": 2},
    "pvt_acmix_t": {"features": True},
    "pvt_acmix_s": {"optimize": True},
    "san10": {"optimize": True},
    "san15": {},
    "san19": {},
    "san_acmix10": {"features": True},
    "san_acmix15": {},
    "san_acmix19": {"optimize": True},
}


# The deeper cards differ from the shallower ones of their family only in how often a stage repeats
# its block; the exporter's cost grows with the number of blocks traced (about 2 s of CPU each), so
# those exports repeat fewer (each stage keeps a strided first block and, for Swin, a shifted second).
# Every card is still built at its own depth by tests/test_models.py.
EXPORT_DEPTHS: dict[str, dict[str, list[int]]] = {
    **dict.fromkeys(("resnet_acmix38", "resnet_acmix50", "resnet38", "resnet50"), {"layers": [1, 2, 2, 1]}),
    **dict.fromkeys(("swin_acmix_s", "swin_s"), {"depths": [2, 2, 2, 2]}),
}


def small_export_kwargs(name: str) -> dict[str, Any]:
    overrides = {**small_overrides(name), **EXPORT_DEPTHS.get(name, {})}
    size = overrides.pop("img_size")
    kwargs = {"img_size": size, "overrides": overrides, "optimize": False}
    kwargs.update(EXPORT_OPTIONS[name])
    return kwargs


@pytest.fixture(scope="session")
def small_export(tmp_path_factory) -> Callable[[str], ExportResult]:
    """name -> ExportResult of the model's small export (cached for the session)."""
    folder: Path = tmp_path_factory.mktemp("exports")
    cache: dict[str, ExportResult] = {}

    def get(name: str) -> ExportResult:
        if name not in cache:
            cache[name] = export_onnx(name, output=folder / f"{name}.onnx", **small_export_kwargs(name))
        return cache[name]

    return get
