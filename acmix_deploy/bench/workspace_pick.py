"""What `bench` / `profile` measure when given no input: the newest model of the workspace.

"Newest model" is the model of the most recent manifest record; of its files each backend gets the
newest it can run, like for like with the registry baseline:

* tensorrt: the model's newest engine; the baseline's engine of the same precision, TensorRT flavour
  and input size, reused from the workspace or (where TensorRT can run here) built for this run;
* onnxruntime: the fp32 export the engine (or the newest file) derives from, found by following the
  manifest's source chain (engine -> fp16 / int8 ONNX -> export): ONNX Runtime's CPU provider runs fp16
  graphs through inserted casts, so the fp16 file would mislead; the baseline's newest fp32 export at
  the same size, else one exported for this run (dynamic batch, not recorded).

Every pick comes with a line saying which file and why.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from acmix_deploy import workspace as ws
from acmix_deploy.bench.sources import ModelSource, Resolver, resolve_model
from acmix_deploy.errors import AcmixError


@dataclass
class WorkspacePick:
    model: ModelSource
    baseline: ModelSource | None
    lines: list[str] = field(default_factory=list)


def _name(path: str | os.PathLike[str]) -> str:
    return Path(path).name


def _input_size(art: ws.Artifact) -> tuple[int, int] | None:
    from acmix_deploy.bench.sources import from_file

    kind = "engine" if art.kind == ws.ENGINE else "onnx"
    return from_file(art.path, None, kind).input_size


def _model_source(latest: ws.Artifact, workspace, lines: list[str]) -> tuple[ModelSource, ws.Artifact | None, ws.Artifact | None]:
    """The model's source (engine and fp32 ONNX), its engine record and its fp32 export record."""
    model = latest.model
    mine = [a for a in ws.artifacts(workspace) if a.model == model]
    engines = [a for a in mine if a.kind == ws.ENGINE]
    engine = engines[-1] if engines else None
    lines.append(f"no input given: measuring {model}, the model of the newest workspace record ({_name(latest.path)})")
    start = engine or mine[-1]
    fp32, chain = ws.fp32_source(start, workspace)
    if fp32 is not None and len(chain) > 1:
        why = f"the fp32 export {_name(start.path)} derives from: {' -> '.join(reversed(chain))}"
    elif fp32 is not None:
        why = f"the newest file of {model}"
    else:
        plain = [a for a in mine if a.kind in ws.FP32_ONNX]
        fp32 = plain[-1] if plain else None
        why = f"the newest fp32 ONNX of {model} (the source chain of {_name(start.path)} ends outside the workspace)"
    if engine is not None:
        lines.append(f"tensorrt: {engine.path} (the newest engine of {model})")
    if fp32 is not None:
        fp16_note = "; fp16 / int8 files are not timed on ONNX Runtime's CPU provider, which runs them through casts"
        lines.append(f"onnxruntime: {fp32.path} ({why}{fp16_note if engine is not None else ''})")
    source = ModelSource(
        label=model, name=model,
        onnx_path=Path(fp32.path) if fp32 is not None else None,
        engine_path=Path(engine.path) if engine is not None else None,
        input_size=_input_size(engine or fp32) if (engine or fp32) else None,
    )
    if source.onnx_path is None and source.engine_path is None:
        raise AcmixError(f"the workspace has no ONNX file or engine of {model}; pass a file or --model")
    return source, engine, fp32


def _baseline_name(model: str, export: ws.Artifact | None, lines: list[str]) -> str | None:
    from acmix_deploy.registry import get_card, list_models

    if model not in list_models():
        return None
    baseline = get_card(model).baseline
    if not baseline:
        return None
    overrides = {k: v for k, v in ((export.meta.get("overrides") or {}) if export else {}).items() if k != "img_size"}
    if overrides:
        lines.append(f"no baseline: {model} was exported with overrides {overrides}, which {baseline} does not share")
        return None
    return baseline


def _baseline_onnx(baseline: str, size: tuple[int, int], workspace, resolver: Resolver | None,
                   lines: list[str]) -> ModelSource:
    found = [a for a in ws.artifacts(workspace) if a.model == baseline and a.kind in ws.FP32_ONNX
             and a.meta.get("img_size") in (None, size[0]) and _input_size(a) == size]  # fmt: skip
    if found:
        lines.append(f"baseline {baseline} on onnxruntime: {found[-1].path} (its newest fp32 ONNX at {size[0]} px)")
        return ModelSource(label=baseline, name=baseline, onnx_path=Path(found[-1].path), input_size=size)
    lines.append(f"baseline {baseline} on onnxruntime: exported for this run at {size[0]} px "
                 "(fp32, dynamic batch, not recorded; none in the workspace)")
    src = (resolver or resolve_model)(baseline, img_size=size[0], shift=None)
    src.torch_factory = None  # like for like: only the files' backends
    return src


def pick(
    workspace: str | os.PathLike[str] | None = None,
    resolver: Resolver | None = None,
    with_baseline: bool = True,
    say: Callable[[str], object] | None = None,
) -> WorkspacePick:
    """The newest workspace model as a ModelSource (engine + fp32 ONNX) and its registry baseline."""
    lines: list[str] = []
    latest = ws.newest_model(workspace)
    source, engine, fp32 = _model_source(latest, workspace, lines)
    baseline = None
    name = _baseline_name(latest.model, _export_record(fp32, workspace), lines) if with_baseline else None
    if name is not None and source.input_size is not None:
        baseline = _baseline_onnx(name, source.input_size, workspace, resolver, lines)
        if engine is not None:
            from acmix_deploy.bench.baseline_engine import baseline_engine

            baseline.engine_path = baseline_engine(engine, name, source.input_size, workspace, lines, say)
    if baseline is not None:
        lines.append(f"baseline: {name}, the registry baseline of {latest.model}")
    return WorkspacePick(source, baseline, lines)


def _export_record(fp32: ws.Artifact | None, workspace) -> ws.Artifact | None:
    """The export record behind an fp32 file (an optimized file names its export as its source)."""
    seen = 0
    while fp32 is not None and fp32.kind != ws.ONNX and seen < 4:
        src = fp32.meta.get("source")
        fp32 = ws.find(src, workspace) if src else None
        seen += 1
    return fp32
