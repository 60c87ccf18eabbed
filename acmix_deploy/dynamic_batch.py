"""A batch range for `build-trt` given no input: re-export a static-batch workspace export.

`acmix-deploy export --model NAME` writes a batch-1 graph (the README's batch-1 numbers use it); an
engine built from it takes batch 1 only, which is the wrong default on a GPU server. When build-trt
picks such an export from the workspace, it exports the same model again, with the same settings
(size, shift, checkpoint, overrides, conv form, passes) but a dynamic batch axis, and builds from that.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from acmix_deploy import workspace as ws
from acmix_deploy.errors import AcmixError
from acmix_deploy.fileio import sha256_file


def static_batch(path: str | os.PathLike[str]) -> int | None:
    """The fixed batch of an ONNX file's first input, None when it is symbolic."""
    from acmix_deploy.onnxio import load_model

    graph = load_model(path, load_external_data=False).graph
    if not graph.input or not graph.input[0].type.tensor_type.shape.dim:
        return None
    dim = graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def _why_not(export: ws.Artifact) -> str | None:
    """Why `export` cannot be exported again exactly (None when it can)."""
    from acmix_deploy.registry import list_models

    meta = export.meta
    if export.model not in list_models():
        return f"{export.model} is not a registry model"
    if meta.get("features"):
        return "it is a --features export"
    if meta.get("checkpoint_sha256"):
        ckpt = meta.get("checkpoint")
        if not ckpt or not Path(ckpt).is_file():
            return "its checkpoint is not at the recorded path"
        if sha256_file(ckpt) != meta["checkpoint_sha256"]:
            return f"its checkpoint {ckpt} changed since the export"
    if "img_size" not in meta:
        return "the workspace record lacks its export settings"
    return None


def dynamic_reexport(
    art: ws.Artifact,
    max_batch: int,
    workspace: str | os.PathLike[str] | None,
    say: Callable[[str], object],
) -> Path | None:
    """For a static-batch fp32 workspace ONNX `art`, a dynamic-batch export of the same model (written
    and recorded in the workspace); None (after saying why) when it stays as it is."""
    fixed = static_batch(art.path)
    if fixed is None or max_batch <= fixed:
        return None
    export, _ = ws.fp32_source(art, workspace)
    while export is not None and export.kind != ws.ONNX:  # an optimized file: its export's settings
        export = ws.find(export.meta.get("source", ""), workspace) if export.meta.get("source") else None
    reason = "no export record behind it" if export is None else _why_not(export)
    if reason is not None:
        say(f"note: {Path(art.path).name} takes batch {fixed} only and is not exported again ({reason}); "
            "export with --dynamic-batch for a batch range")
        return None
    from acmix_deploy.export import export_onnx

    meta = export.meta
    say(f"{Path(art.path).name} takes batch {fixed} only: exporting {export.model} again with a dynamic batch "
        f"axis (same size, shift, weights and passes) so the engine serves batches up to {max_batch}")
    try:
        result = export_onnx(
            export.model, checkpoint=meta.get("checkpoint"), img_size=meta["img_size"], dynamic_batch=True,
            opset=meta.get("opset", 18), shift=meta.get("shift") or "group", optimize=meta.get("optimized", True),
            verify=meta.get("verified", True), workspace=workspace, overrides=meta.get("overrides") or {},
            deploy_options=meta.get("deploy_options") or None,
            log=lambda line: say(f"  {line}"),
        )
    except AcmixError as exc:
        raise AcmixError(f"exporting {export.model} with a dynamic batch failed: {exc}") from None
    say(f"exported {export.model} with a dynamic batch -> {result.path}")
    return Path(result.path)
