"""The one ONNX file module: load with one-line errors, validate, save atomically, read and write
metadata. Every other module opens and writes ONNX files through it, so a missing, truncated or
non-ONNX file gets the same message in every command, external data is handled one way, and every
write goes through fileio's atomic helpers (complete or absent, never half-written)."""

from __future__ import annotations

import json
import os
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
WHAT = "ONNX file"  # the label of every message about an ONNX input


def not_onnx(path: str | os.PathLike[str], why: str) -> AcmixError:
    """THE wording for a file that exists but holds no readable ONNX model."""
    return AcmixError(f"{path} is not an ONNX model ({why})")


def load_model(path: str | os.PathLike[str], load_external_data: bool = True) -> onnx.ModelProto:
    """The one ONNX loader: "ONNX file X does not exist" / "... is a folder, not a file" / "... is not a
    regular file" / "... is empty" (fileio.check_input_file), "X is not an ONNX model (why)" for a
    truncated or foreign file, "X: cannot read its external data (why)"; each one line.

    External data files (onnx's `location` entries, relative to the model's folder) are read only with
    `load_external_data`; without it the initializers keep their references (shape-only readers)."""
    from acmix_deploy.fileio import check_input_file

    path = check_input_file(path, WHAT)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError / OSError / ValueError / RecursionError
        raise not_onnx(path, first_line(exc)) from None
    if not model.graph.node and not model.graph.output:
        raise not_onnx(path, "no graph")
    if load_external_data:
        attach_external_data(model, path)
    return model


def attach_external_data(model: onnx.ModelProto, path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Read the external data files of `model` (loaded from `path` without them) into it, in place."""
    if external_files(model):
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(Path(path).parent))
        except Exception as exc:  # noqa: BLE001 - a missing / short / escaping data file
            raise AcmixError(f"{path}: cannot read its external data ({first_line(exc)})") from None
    return model


def external_files(model: onnx.ModelProto) -> set[str]:
    """The external data files (relative `location`s) the model's initializers still refer to."""
    return {
        entry.value
        for t in model.graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
        for entry in t.external_data
        if entry.key == "location"
    }


def size_on_disk(path: str | os.PathLike[str], model: onnx.ModelProto | None = None) -> int:
    """Bytes of the file plus the external data files `model` (loaded without them) refers to."""
    path = Path(path)
    files = external_files(model) if model is not None else set()
    return path.stat().st_size + sum((path.parent / f).stat().st_size for f in files if (path.parent / f).is_file())


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


def input_info(model: onnx.ModelProto) -> tuple[str, list[int | str]]:
    """Name and dims (int, or the symbolic name) of the first real graph input (not an initializer)."""
    inits = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in inp.type.tensor_type.shape.dim]
        return inp.name, dims
    raise AcmixError("the model has no graph input")


def json_value(raw: str) -> Any:
    """An ONNX metadata_props value: JSON where it parses (export writes JSON), else the raw string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw
    except RecursionError:
        raise AcmixError(f"ONNX metadata value {raw[:20]!r}... is nested too deeply to read (malformed file)") from None


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The metadata_props as stored (raw strings)."""
    return {p.key: p.value for p in model.metadata_props}


def metadata_values(model: onnx.ModelProto) -> dict[str, Any]:
    """The metadata_props decoded (`json_value`): what export wrote, as Python values."""
    return {p.key: json_value(p.value) for p in model.metadata_props}


def set_metadata(model: onnx.ModelProto, values: dict[str, object]) -> None:
    """Add / replace metadata_props entries, JSON-encoded like the ones export writes."""
    props = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        if key in props:
            props[key].value = json.dumps(value)
        else:
            model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=json.dumps(value)))


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


def save_model(model: onnx.ModelProto, dest: str | os.PathLike[str]) -> Path:
    """Write `model` to `dest` as one file, atomically (ACmix models are far below protobuf's 2 GiB)."""
    if model.ByteSize() > _TWO_GIB:
        raise AcmixError("the model exceeds 2 GiB, which single-file ONNX cannot hold")
    return write_bytes_atomic(dest, model.SerializeToString())


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
    dest = Path(output) if output else ws.default_output(Path(source), name, suffix, workspace)
    set_metadata(model, metadata)
    path = save_model(model, dest)
    if record and ws.is_inside(dest, workspace):
        ws.record(kind, name, dest, {"source": str(Path(source).resolve()), **info}, workspace)
    return path
