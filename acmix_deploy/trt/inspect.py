"""What an engine is: its sidecar, and per-layer information where this machine can load it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acmix_deploy.errors import AcmixError
from acmix_deploy.runners.gpu import torch_cuda_available
from acmix_deploy.runners.sidecar import Sidecar, verify_engine


@dataclass
class EngineReport:
    sidecar: Sidecar
    layers: list[Any] | None  # per-layer dicts (or strings) from the engine inspector
    note: str | None  # why there are no layers


def _layers(trt, engine) -> list[Any]:
    inspector = engine.create_engine_inspector()
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    try:
        info = json.loads(text)
    except ValueError:
        return [line for line in str(text).splitlines() if line.strip()]
    layers = info.get("Layers", []) if isinstance(info, dict) else info
    return list(layers)


def inspect_engine(engine_path: str | os.PathLike[str], runtime: str = "auto", layers: bool = True) -> EngineReport:
    """The sidecar, plus the engine inspector's layers when a GPU can deserialise the engine."""
    from acmix_deploy.runners.trt_engine import check_engine_file, deserialize_engine, resolve_runtime

    path = Path(engine_path)
    sidecar = verify_engine(path)  # file and sidecar checked (sha256) before TensorRT or a GPU
    if not layers:
        return EngineReport(sidecar, None, None)
    data = check_engine_file(path, sidecar)
    try:
        trt, _, _, _ = resolve_runtime(sidecar, runtime)
    except AcmixError as exc:
        return EngineReport(sidecar, None, f"per-layer information unavailable: {exc}")
    if not torch_cuda_available():
        return EngineReport(
            sidecar, None,
            f"per-layer information needs the engine deserialised, which {sidecar.trt_flavour} only does on a "
            "CUDA GPU (none found here)",
        )
    import torch

    try:
        _runtime, engine, _ = deserialize_engine(trt, data, 0, "the engine here")
    except AcmixError as exc:
        return EngineReport(sidecar, None, str(exc))
    with torch.cuda.device(0):
        return EngineReport(sidecar, _layers(trt, engine), None)


def layer_summary(layer: Any) -> tuple[str, str, str]:
    """(name, type, precision/tactic) of one inspector entry (JSON dict or plain string)."""
    if isinstance(layer, str):
        return layer, "", ""
    name = str(layer.get("Name", ""))
    kind = str(layer.get("LayerType", layer.get("ParameterType", "")))
    outputs = layer.get("Outputs") or []
    fmt = ""
    if outputs and isinstance(outputs[0], dict):
        fmt = str(outputs[0].get("Format/Datatype", ""))
    tactic = str(layer.get("TacticName", layer.get("TacticValue", "")))
    return name, kind, " ".join(x for x in (fmt, tactic) if x)
