"""Loading, naming and saving ONNX models for the precision transforms (one-line errors)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from acmix_deploy import workspace as ws
from acmix_deploy.errors import AcmixError, ParityError, first_line
from acmix_deploy.fileio import write_bytes_atomic

if TYPE_CHECKING:
    from acmix_deploy.parity import ParityResult

# ONNX metadata_props keys that may carry the registry model name (export writes one of them)
_NAME_KEYS = ("model_name", "model", "name")
_TWO_GIB = 2**31 - 1


def load_model(path: str | os.PathLike[str], load_external_data: bool = True) -> onnx.ModelProto:
    """The one ONNX loader: "X does not exist" / "X is a folder" / "X is not a regular file" /
    "X is empty" / "X is not an ONNX model", each one line, for every command."""
    from acmix_deploy.fileio import check_input_file

    path = check_input_file(path, "ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:  # onnx raises DecodeError / OSError / ValueError / RecursionError
        raise AcmixError(f"{path} is not an ONNX model ({first_line(exc)})") from None
    if not model.graph.node and not model.graph.output:
        raise AcmixError(f"{path} is not an ONNX model (no graph)")
    return model


# Ops whose weights are never legitimately infinite (an additive attention mask may hold -inf).
_WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "LayerNormalization",
               "InstanceNormalization", "GroupNormalization"}


def check_finite(model: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    """Refuse weights holding NaN (anywhere) or +-Inf (in conv / matmul / norm weights) before any pass
    runs: otherwise the first constant-folding pass is blamed for the file's own values."""
    import numpy as np
    from onnx import numpy_helper

    weight_inputs = {name for n in model.graph.node if n.op_type in _WEIGHT_OPS for name in n.input[1:]}
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL or init.data_type not in _FLOAT_TYPES:
            continue
        values = numpy_helper.to_array(init)
        if np.isnan(values).any():
            raise AcmixError(f"{path}: the weights contain NaN (initializer {init.name}); the file is broken")
        if init.name in weight_inputs and np.isinf(values).any():
            raise AcmixError(f"{path}: the weights contain Inf (initializer {init.name}); the file is broken")


_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def model_name(model: onnx.ModelProto, path: str | os.PathLike[str]) -> str:
    """The registry name recorded by export, else the file stem up to its first dot."""
    meta = metadata(model)
    for key in _NAME_KEYS:
        if meta.get(key):
            return meta[key].strip('"')
    return Path(path).name.split(".")[0]


def load_source(path: str | os.PathLike[str], name: str | None = None) -> tuple[onnx.ModelProto, str]:
    """(model with unique node names, registry name) of the fp32 source of a precision transform."""
    model = load_model(path)
    check_finite(model, path)
    ensure_node_names(model)
    return model, name or model_name(model, path)


def ensure_node_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every node a unique name: block lists and quantizer exclusions address nodes by name."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        node.name = name
        seen.add(name)
    return model


def save_model_atomic(model: onnx.ModelProto, dest: str | os.PathLike[str]) -> Path:
    """Write `model` to `dest` as one file, atomically (ACmix models are far below protobuf's 2 GiB)."""
    if model.ByteSize() > _TWO_GIB:
        raise AcmixError("the transformed model exceeds 2 GiB, which single-file ONNX cannot hold")
    return write_bytes_atomic(dest, model.SerializeToString())


def set_metadata(model: onnx.ModelProto, values: dict[str, object]) -> None:
    """Add / replace metadata_props entries, JSON-encoded like the ones export writes."""
    props = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        if key in props:
            props[key].value = json.dumps(value)
        else:
            model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=json.dumps(value)))


def write_verified(
    model: onnx.ModelProto,
    report: ParityResult,
    *,
    source: str | os.PathLike[str],
    output: str | os.PathLike[str] | None,
    name: str,
    suffix: str,
    metadata: dict[str, object],
    kind: str,
    info: dict[str, Any],
    workspace: str | os.PathLike[str] | None = None,
    record: bool = True,
) -> Path:
    """Save a transformed model only if its parity `report` passed (else ParityError, nothing written).

    The file goes to `output`, else `default_output(source, name, suffix)`, with `metadata` set; with
    `record` it is added to the workspace as `kind` with `info` after the resolved source path, when it
    lies inside the workspace (the recording rule of every command: `workspace.is_inside`).
    """
    if not report.passed:
        raise ParityError(report.line() + "; nothing written")
    dest = Path(output) if output else default_output(Path(source), name, suffix, workspace)
    set_metadata(model, metadata)
    path = save_model_atomic(model, dest)
    if record and ws.is_inside(dest, workspace):
        ws.record(kind, name, dest, {"source": str(Path(source).resolve()), **info}, workspace)
    return path


def check_output(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str] | None,
    name: str,
    suffix: str,
    workspace: str | os.PathLike[str] | None = None,
    record: bool = True,
    data: str | os.PathLike[str] | None = None,
) -> Path:
    """The destination of a transform, checked before the work: a writable file location that is
    neither the source nor the data file, and (when recording) a readable workspace manifest."""
    from acmix_deploy.fileio import check_collisions, check_destination

    dest = Path(output) if output else default_output(Path(source), name, suffix, workspace)
    check_destination(dest, "-o")
    inputs = {"input": source}
    if data is not None and Path(data).exists():
        inputs["--data"] = data
    check_collisions(inputs, {"-o": dest})
    if record:
        ws.check_manifest(workspace)
    return dest


def resolve_input(
    path: str | os.PathLike[str] | None,
    kinds: tuple[str, ...] = (ws.ONNX_OPTIMIZED, ws.ONNX),
    workspace: str | os.PathLike[str] | None = None,
) -> tuple[Path, str | None, bool]:
    """(path, workspace model name or None, taken_from_workspace) for an optional input file.

    With no path: the newest model of the workspace (the model of its most recent record), and of
    its files the newest of `kinds`."""
    if path is not None:
        return Path(path), None, False
    art = newest_input(kinds, workspace)
    return Path(art.path), art.model, True


def newest_input(kinds: tuple[str, ...], workspace: str | os.PathLike[str] | None = None) -> ws.Artifact:
    """The newest artifact of `kinds` of the workspace's newest model (else of any model)."""
    latest = ws.newest_model(workspace)
    try:
        return ws.newest(kinds, model=latest.model, workspace=workspace)
    except AcmixError:
        return ws.newest(kinds, workspace=workspace)


def resolve_input_verbose(
    path: str | os.PathLike[str] | None,
    workspace: str | os.PathLike[str] | None,
    print_fn: Callable[[str], object],
) -> tuple[Path, str | None]:
    """`resolve_input` for the CLI: (path, workspace model name or None), saying which file was picked."""
    resolved, model, from_ws = resolve_input(path, workspace=workspace)
    if from_ws:
        print_fn(f"input: {resolved} (newest fp32 ONNX of {model}, the newest model in the workspace)")
    return resolved, model


def default_output(
    source: Path, model: str, suffix: str, workspace: str | os.PathLike[str] | None = None
) -> Path:
    """`<workspace>/<model>/<source stem><suffix>` (e.g. resnet_acmix26.opt.fp16.onnx)."""
    stem = source.name[: -len(".onnx")] if source.name.endswith(".onnx") else source.stem
    return ws.default_path(model, stem + suffix, workspace)
