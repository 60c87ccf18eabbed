"""What a benchmark or profile runs: a model name, an ONNX file or a TensorRT engine.

`resolve_model(name, img_size, shift)` turns `--model NAME` into a ModelSource: a picklable torch
factory (so memory can be measured in a child process) and a lazy ONNX export. It is the single
integration point with acmix_deploy.registry / acmix_deploy.export; pass another resolver to
bench()/profile() (tests do) to run stand-in models.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acmix_deploy.errors import AcmixError

SHIFTS = ("group", "fixed", "tensor")  # acmix_deploy.nn.shift.SHIFT_MODES (kept here: no torch import)

DEFAULT_IMG_SIZE = 224


@dataclass
class ModelSource:
    """Everything a runner may need for one model; fields a backend cannot use stay None."""

    label: str
    name: str | None = None
    torch_factory: Callable[[], Any] | None = None  # picklable, returns an eval()-able nn.Module
    onnx_path: Path | None = None
    onnx_factory: Callable[[Path], Path] | None = None  # exports into a folder, returns the file
    engine_path: Path | None = None
    input_size: tuple[int, int] | None = None  # (H, W)
    overrides: dict[str, Any] = field(default_factory=dict)

    def require_onnx(self, workdir: Path) -> Path:
        """The ONNX file, exported on first use into `workdir` when only a model name was given."""
        if self.onnx_path is None:
            if self.onnx_factory is None:
                raise AcmixError(f"{self.label}: no ONNX model available")
            workdir.mkdir(parents=True, exist_ok=True)
            self.onnx_path = Path(self.onnx_factory(workdir))
        return self.onnx_path

    def describe(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "name": self.name,
            "onnx": str(self.onnx_path) if self.onnx_path else None,
            "engine": str(self.engine_path) if self.engine_path else None,
            "input_size": list(self.input_size) if self.input_size else None,
            "overrides": dict(self.overrides),
        }


Resolver = Callable[..., ModelSource]


def _create_registry_model(name: str, overrides: dict[str, Any]) -> Any:
    from acmix_deploy.registry import create_model

    return create_model(name, **overrides).eval()


def _export_registry_model(name: str, img_size: int | None, shift: str | None, workdir: Path) -> Path:
    from acmix_deploy.export import export_onnx

    kwargs: dict[str, Any] = {"img_size": img_size, "dynamic_batch": True, "verify": False}
    if shift is not None:
        kwargs["shift"] = shift
    result = export_onnx(name, output=str(Path(workdir) / f"{name}.onnx"), **kwargs)
    return Path(result.path)


def label_for(name: str, shift: str | None) -> str:
    return f"{name}[shift={shift}]" if shift else name


def resolve_model(name: str, img_size: int | None = None, shift: str | None = None) -> ModelSource:
    """Registry model -> ModelSource (torch factory + lazy dynamic-batch ONNX export)."""
    from acmix_deploy import registry

    card = registry.get_card(name)  # one-line AcmixError naming the valid models
    overrides: dict[str, Any] = {}
    if img_size is not None:
        overrides["img_size"] = img_size
    if shift is not None:
        overrides["shift"] = shift
    return ModelSource(
        label=label_for(name, shift),
        name=name,
        torch_factory=functools.partial(_create_registry_model, name, overrides),
        onnx_factory=functools.partial(_export_registry_model, name, img_size, shift),
        input_size=(img_size or card.input_size,) * 2,
        overrides=overrides,
    )


def from_file(path: str | os.PathLike[str], img_size: int | None = None, kind: str | None = None) -> ModelSource:
    """An ONNX or engine file as a ModelSource (no torch model behind it).

    `kind` is "onnx" or "engine"; by default the suffix decides (.onnx, anything else is an engine).
    """
    from acmix_deploy.fileio import check_input_file

    p = Path(path)
    size = (img_size, img_size) if img_size else None
    if (kind or ("onnx" if p.suffix.lower() == ".onnx" else "engine")) == "onnx":
        from acmix_deploy.export import check_input_size, input_size
        from acmix_deploy.onnxio import load_model

        load_model(p, load_external_data=False)  # one loader, one message: missing / empty / not ONNX

        if size is not None:
            check_input_size(p, *size)  # one line when --img-size differs from the size fixed at export
        return ModelSource(label=p.stem, onnx_path=p, input_size=size or input_size(p) or (DEFAULT_IMG_SIZE,) * 2)
    from acmix_deploy.runners.sidecar import verify_engine

    check_input_file(p, "engine")
    verify_engine(p)  # a corrupt engine or sidecar is reported as such, before any GPU question
    built = _engine_input_size(p)
    if size is not None and built is not None and size != built:
        raise AcmixError(f"{p.name} takes {built[0]}x{built[1]} images (fixed when the engine was built), "
                         f"not {size[0]}x{size[1]}")
    return ModelSource(label=p.stem, engine_path=p, input_size=size or built or (DEFAULT_IMG_SIZE,) * 2)


def _engine_input_size(path: Path) -> tuple[int, int] | None:
    """H, W of the engine's image input from its sidecar; None where the sidecar or a fixed size is
    missing (the engine runner then reports the sidecar problem as the row's reason)."""
    from acmix_deploy.runners.sidecar import read_sidecar

    try:
        shape = read_sidecar(path).inputs[0].shape
    except (AcmixError, IndexError):
        return None
    return (shape[-2], shape[-1]) if len(shape) == 4 and min(shape[-2:]) > 0 else None


def resolve_target(
    model: str | None = None,
    onnx: str | os.PathLike[str] | None = None,
    engine: str | os.PathLike[str] | None = None,
    img_size: int | None = None,
    shift: str | None = None,
    resolver: Resolver | None = None,
    workspace: str | os.PathLike[str] | None = None,
) -> tuple[ModelSource, str | None]:
    """The one input of a bench/profile; with none, the newest model of the workspace (its engine and
    the fp32 ONNX that engine derives from: bench.workspace_pick).

    Returns the source and, when it came from the workspace, lines saying which files and why.
    """
    given = [x for x in (model, onnx, engine) if x is not None]
    if len(given) > 1:
        raise AcmixError("give only one of --model, --onnx, --engine")
    if shift is not None and shift not in SHIFTS:
        raise AcmixError(f"--shift must be one of {', '.join(SHIFTS)}")
    if shift is not None and model is None:
        raise AcmixError("--shift applies to --model only (an exported file has its shift built in)")
    if model is not None:
        return (resolver or resolve_model)(model, img_size=img_size, shift=shift), None
    if onnx is not None:
        return from_file(onnx, img_size, "onnx"), None
    if engine is not None:
        return from_file(engine, img_size, "engine"), None
    from acmix_deploy.bench.workspace_pick import pick

    chosen = pick(workspace, resolver, with_baseline=False)
    return chosen.model, "\n".join(chosen.lines)


def resolve_baseline(
    baseline: str, img_size: int | None, resolver: Resolver | None = None
) -> ModelSource:
    """--baseline: a model name, or a path to an .onnx / engine file."""
    p = Path(baseline)
    if p.suffix.lower() in {".onnx", ".engine", ".plan", ".trt"} or p.is_file():
        return from_file(p, img_size)
    return (resolver or resolve_model)(baseline, img_size=img_size, shift=None)
