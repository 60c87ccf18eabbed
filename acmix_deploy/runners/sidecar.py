"""The JSON sidecar written next to every engine (`<engine>.json`).

A serialized TensorRT engine only runs on the TensorRT flavour and version that built it and on a
GPU it was built for; the sidecar records both, plus what the engine was built from, so a runner
can refuse a mismatch with one clear line *before* it touches a GPU.

`onnx_path` is stored relative to the sidecar's folder when the ONNX file lies in the same tree
(the engine's folder or the one above it: the workspace in its default layout), so a moved or
mounted workspace keeps the link; `read_sidecar` resolves it to an absolute path.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from acmix_deploy.errors import AcmixError, first_line

FORMAT = "acmix-deploy-engine/1"
# TensorRT-RTX engines built with no explicit target run on Ampere and later (8.0, 8.6, 8.9, 12.x);
# Turing (7.5) must be asked for explicitly (TensorRT-RTX "CPU-only AOT" documentation).
RTX_DEFAULT_MIN_CC = (8, 0)


@dataclass
class TensorInfo:
    name: str
    dtype: str  # numpy name: float32, float16, int64 ...
    shape: list[int]  # -1 for a dynamic dimension


@dataclass
class Sidecar:
    model: str
    precision: str  # fp32 | fp16 | int8 (int8 graphs may keep fp16/fp32 islands)
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    profiles: dict[str, dict[str, list[int]]]  # input -> {min, opt, max}
    onnx_path: str
    onnx_sha256: str
    engine_sha256: str
    trt_flavour: str  # tensorrt | tensorrt-rtx
    trt_version: str
    gpu_name: str | None  # GPU the engine was built on (None for an ahead-of-time build)
    gpu_compute_capability: str | None  # "9.0"; None for an ahead-of-time build
    target_compute_capabilities: list[str] | None  # TensorRT-RTX targets; None = its default
    build_seconds: float
    created: str
    toolkit_version: str
    build_options: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @property
    def batch_range(self) -> tuple[int, int, int]:
        """(min, opt, max) batch of the first input's profile."""
        first = self.profiles[self.inputs[0].name]
        return first["min"][0], first["opt"][0], first["max"][0]


def sidecar_path(engine_path: str | os.PathLike[str]) -> Path:
    return Path(str(engine_path) + ".json")


def stored_onnx_path(onnx_path: str | os.PathLike[str], engine_path: str | os.PathLike[str]) -> str:
    """What the sidecar stores for `onnx_path`: relative to the engine's folder when the file lies under
    that folder's parent (the workspace), else absolute."""
    onnx_abs = Path(onnx_path).resolve()
    folder = Path(engine_path).resolve().parent
    try:
        onnx_abs.relative_to(folder.parent)
    except ValueError:
        return str(onnx_abs)
    return Path(os.path.relpath(onnx_abs, folder)).as_posix()


def read_sidecar(engine_path: str | os.PathLike[str]) -> Sidecar:
    """Read `<engine>.json`; one-line errors for a missing or malformed sidecar (wrong JSON shape or
    field types included), before anything touches TensorRT or a GPU."""
    from acmix_deploy.fileio import check_input_file

    path = sidecar_path(engine_path)
    if not path.exists() and not path.is_symlink():
        raise AcmixError(
            f"{path} is missing: engines are only run with the sidecar written by `acmix-deploy build-trt`"
        )
    check_input_file(path, "sidecar")
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
        data["inputs"] = [TensorInfo(**t) for t in data["inputs"]]
        data["outputs"] = [TensorInfo(**t) for t in data["outputs"]]
        if isinstance(data.get("onnx_path"), str) and data["onnx_path"] and not Path(data["onnx_path"]).is_absolute():
            data["onnx_path"] = os.path.normpath(path.resolve().parent / data["onnx_path"])
        side = Sidecar(**data)
        _check_types(side)
        return side
    except (ValueError, TypeError, KeyError, RecursionError, UnicodeDecodeError) as exc:
        raise AcmixError(f"sidecar {path} is unreadable: {first_line(exc)}") from None


def _check_types(side: Sidecar) -> None:
    """Fields the runners index into must have the written types (a hand-edited file may not)."""
    if not side.inputs or not side.outputs:
        raise ValueError("no inputs or outputs recorded")
    for t in [*side.inputs, *side.outputs]:
        if not isinstance(t.name, str) or not isinstance(t.dtype, str) or not isinstance(t.shape, list) \
                or not all(isinstance(d, int) for d in t.shape):
            raise ValueError(f"tensor {t.name!r} is malformed")
    if not isinstance(side.profiles, dict) or not all(isinstance(v, dict) for v in side.profiles.values()):
        raise ValueError("profiles must map input names to {min, opt, max}")
    for key in ("engine_sha256", "onnx_sha256", "trt_flavour", "trt_version", "model", "precision"):
        if not isinstance(getattr(side, key), str):
            raise ValueError(f"{key} must be a string")
    for shapes in side.profiles.values():
        for key in ("min", "opt", "max"):
            dims = shapes.get(key)
            if not isinstance(dims, list) or not dims or not all(isinstance(d, int) and d >= 0 for d in dims):
                raise ValueError(f"profile {key} must be a list of non-negative integers")
    if side.inputs[0].name not in side.profiles:
        raise ValueError(f"no batch profile for input {side.inputs[0].name!r}")


def verify_engine(engine_path: str | os.PathLike[str]) -> Sidecar:
    """The sidecar of an engine whose file is present and is the one the sidecar was written for
    (sha256): a missing, empty, corrupt or half-replaced engine is refused in one line, before a GPU."""
    from acmix_deploy.fileio import check_input_file, sha256_file

    path = check_input_file(engine_path, "engine")
    side = read_sidecar(path)
    if sha256_file(path) != side.engine_sha256:
        raise AcmixError(
            f"engine {path} does not match its sidecar {sidecar_path(path).name} (sha256 differs: a corrupt "
            "or half-replaced file): rebuild it with `acmix-deploy build-trt`"
        )
    return side


def parse_capability(text: str | tuple[int, int]) -> tuple[int, int]:
    """'8.6', '86', 'sm86', 'SM_86' or (8, 6) -> (8, 6)."""
    if isinstance(text, tuple):
        return text
    raw = str(text).strip().lower().replace("sm_", "").replace("sm", "")
    try:
        if "." in raw:
            major, minor = raw.split(".", 1)
            return int(major), int(minor)
        value = int(raw)
    except ValueError:
        raise AcmixError(f"bad compute capability {text!r}; write it like 8.6 or sm86") from None
    return value // 10, value % 10


def format_capability(cc: tuple[int, int]) -> str:
    return f"{cc[0]}.{cc[1]}"


def check_compatible(
    sidecar: Sidecar,
    flavour: str,
    version: str,
    capability: tuple[int, int] | None,
    gpu_name: str | None = None,
) -> list[str]:
    """Refuse (AcmixError, one line) an engine this TensorRT or GPU cannot run; return warnings.

    `capability` None skips the GPU check (used when only the flavour / version can be known).
    """
    where = f"engine built with {sidecar.trt_flavour} {sidecar.trt_version}"
    if sidecar.trt_flavour != flavour:
        raise AcmixError(f"{where} cannot run on {flavour} {version}: rebuild it with --runtime {flavour}")
    if sidecar.trt_version != version:
        raise AcmixError(
            f"{where} cannot run on {flavour} {version} (engines are tied to the exact TensorRT version): "
            "rebuild it here or install the matching version"
        )
    warnings: list[str] = []
    if capability is None:
        return warnings
    here = format_capability(capability)
    if sidecar.target_compute_capabilities:
        targets = sidecar.target_compute_capabilities
        if here not in targets:
            raise AcmixError(
                f"{where} targets compute capability {', '.join(targets)}; this GPU"
                f"{f' ({gpu_name})' if gpu_name else ''} is {here}: rebuild with --compute-capability {here}"
            )
    elif sidecar.gpu_compute_capability:
        if sidecar.gpu_compute_capability != here:
            raise AcmixError(
                f"{where} on a compute capability {sidecar.gpu_compute_capability} GPU ({sidecar.gpu_name}); "
                f"this GPU{f' ({gpu_name})' if gpu_name else ''} is {here}: rebuild the engine on this machine"
            )
        if gpu_name and sidecar.gpu_name and gpu_name != sidecar.gpu_name:
            warnings.append(
                f"engine was built on {sidecar.gpu_name}, running on {gpu_name} (same compute capability): "
                "it runs, but rebuilding here may be faster"
            )
    elif sidecar.trt_flavour == "tensorrt-rtx" and capability < RTX_DEFAULT_MIN_CC:
        raise AcmixError(
            f"{where} for its default targets (compute capability 8.0 and later); this GPU is {here}: "
            f"rebuild with --compute-capability {here}"
        )
    return warnings
