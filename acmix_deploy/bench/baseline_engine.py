"""The baseline's TensorRT engine for a no-input `bench`: the same precision, flavour and input size as
the model's engine, reused from the workspace or built for it (export -> fp16 -> engine, recorded)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from acmix_deploy import workspace as ws
from acmix_deploy.errors import AcmixError, first_line


def _engine_size(path: str) -> tuple[int, int] | None:
    from acmix_deploy.bench.sources import _engine_input_size

    return _engine_input_size(Path(path))


def reusable(engine: ws.Artifact, baseline: str, size: tuple[int, int], workspace) -> ws.Artifact | None:
    """The newest engine of `baseline` with `engine`'s precision and TensorRT flavour at `size`."""
    want = (engine.meta.get("precision"), engine.meta.get("runtime"))
    found = [a for a in ws.artifacts(workspace) if a.model == baseline and a.kind == ws.ENGINE
             and (a.meta.get("precision"), a.meta.get("runtime")) == want and _engine_size(a.path) == size]  # fmt: skip
    return found[-1] if found else None


def _can_build_here() -> str | None:
    """None when TensorRT can build and run an engine here, else why not."""
    from acmix_deploy.runners import cuda_available
    from acmix_deploy.runners.trt_import import load_trt

    if not cuda_available():
        return "no CUDA GPU here, so the model's engine cannot run either"
    try:
        load_trt("auto")
    except AcmixError as exc:
        return first_line(exc)
    return None


def _build(engine: ws.Artifact, baseline: str, size: tuple[int, int], workspace,
           say: Callable[[str], object]) -> Path:
    from acmix_deploy.export import export_onnx
    from acmix_deploy.trt.build import build_engine
    from acmix_deploy.runners.sidecar import read_sidecar

    side = read_sidecar(engine.path)
    lo, opt, hi = side.batch_range
    say(f"baseline {baseline}: exporting at {size[0]} px with a dynamic batch")
    path = Path(export_onnx(baseline, img_size=size[0], dynamic_batch=True, workspace=workspace).path)
    if side.precision == "fp16":
        from acmix_deploy.precision.fp16 import convert_fp16

        say(f"baseline {baseline}: converting to fp16")
        path = convert_fp16(path, model=baseline, workspace=workspace).path
    say(f"baseline {baseline}: building a {side.precision} {side.trt_flavour} engine for batch {lo}..{hi}")
    built = build_engine(path, min_batch=lo, opt_batch=opt, max_batch=hi, runtime=side.trt_flavour,
                         model=baseline, workspace=workspace, progress=False)
    return built.path


def baseline_engine(
    engine: ws.Artifact,
    baseline: str,
    size: tuple[int, int],
    workspace: str | os.PathLike[str] | None,
    lines: list[str],
    say: Callable[[str], object] | None = None,
) -> Path | None:
    """Path of the baseline engine to time beside `engine` (None, with a line saying why, if none)."""
    precision = engine.meta.get("precision")
    found = reusable(engine, baseline, size, workspace)
    if found is not None:
        lines.append(f"baseline {baseline} on tensorrt: reused {found.path} ({precision}, same TensorRT and size)")
        return Path(found.path)
    why = _can_build_here()
    if why is None and precision == "int8":
        why = "an int8 engine needs calibration images: build it with `build-trt --model " \
              f"{baseline} --int8 --calib-data DIR`"
    if why is not None:
        lines.append(f"baseline {baseline} on tensorrt: no {precision} engine in the workspace, none built ({why})")
        return None
    path = _build(engine, baseline, size, workspace, say or (lambda _m: None))
    lines.append(f"baseline {baseline} on tensorrt: built {path} ({precision}, same batch range and size)")
    return path
