"""Safe checkpoint reading and writing.

Files are read with torch.load(weights_only=True): a model file never runs code. Accepted layouts:
a bare state dict, or one under 'model' / 'state_dict' (official Swin training checkpoints also
pickle a yacs config next to 'model': that class is stubbed and allow-listed so the weights load;
the config is dropped), with or without a DataParallel 'module.' prefix.

Checkpoints written here are {'model': state_dict, 'acmix_deploy': meta} with meta holding the
model name, overrides, classes and preprocessing, so any command rebuilds the model from the file.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from acmix_deploy.errors import AcmixError, first_line
from acmix_deploy.fileio import atomic_path

META_KEY = "acmix_deploy"


def _stub_class(qualified: str) -> type:
    """A stand-in for a config class pickled beside the weights: its instances unpickle as plain
    OrderedDicts (the only mapping whose items and attributes the weights_only unpickler fills),
    so none of the original class's code exists or runs."""
    module, _, name = qualified.rpartition(".")

    class Stub:
        def __new__(cls, *args: Any, **kwargs: Any) -> OrderedDict:  # type: ignore[misc]
            return OrderedDict()

    Stub.__module__, Stub.__name__, Stub.__qualname__ = module, name, name
    return Stub


# Config classes that official training scripts pickle next to the weights.
_CONFIG_GLOBALS = ("yacs.config.CfgNode", "argparse.Namespace")


@dataclass
class LoadedCheckpoint:
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    path: str = ""


@dataclass
class LoadReport:
    missing: list[str]
    unexpected: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]
    resized: list[str] = field(default_factory=list)  # notes, not errors (see resize_relative_position_tables)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def lines(self) -> list[str]:
        out = list(self.resized)
        out += [f"missing: {k}" for k in self.missing]
        out += [f"unexpected: {k}" for k in self.unexpected]
        out += [f"wrong shape: {k} checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in self.mismatched]
        return out

    def summary(self) -> str:
        return (
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.mismatched)} wrongly shaped keys"
        )


def _torch_load(path: Path) -> Any:
    stubs = [_stub_class(q) for q in _CONFIG_GLOBALS]
    with torch.serialization.safe_globals(stubs):
        return torch.load(path, map_location="cpu", weights_only=True)


def _unpickler_reason(exc: Exception) -> str:
    """The blocked global (or the one informative line) of torch's weights_only refusal, without
    torch's advice to re-run with weights_only=False, which this toolkit never suggests."""
    import re

    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it references {found.group(1)}, a global that is not allowed in a weights file"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "weights_only" not in ln]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            rest = rest or (lines[i + 1] if i + 1 < len(lines) else line)
            return rest.split(". Please")[0]
    return lines[0] if lines else "it holds objects other than tensors and plain containers"


def _check_meta(meta: Any, path: Path) -> dict[str, Any]:
    """Our metadata, or one line when it is of the wrong shape (a list, classes as a number ...)."""
    if not isinstance(meta, dict):
        raise AcmixError(f"{path}: the {META_KEY} metadata must be a mapping, got {type(meta).__name__}")
    build = meta.get("build", {})
    if not isinstance(build, dict) or not isinstance(build.get("overrides", {}), dict) \
            or not isinstance(build.get("name", ""), str):
        raise AcmixError(f"{path}: the {META_KEY} metadata's build must hold a model name and an overrides mapping")
    classes = meta.get("classes")
    if classes is not None and not (isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes)):
        raise AcmixError(f"{path}: the {META_KEY} metadata's classes must be a list of names, got {classes!r:.60}")
    if not isinstance(meta.get("preprocessing", {}), dict):
        raise AcmixError(f"{path}: the {META_KEY} metadata's preprocessing must be a mapping")
    return meta


def _check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """NaN / Inf weights are reported as such, before a model is built or exported from them."""
    for key, value in state.items():
        if value.is_floating_point() and not _derived(key) and not bool(torch.isfinite(value).all()):
            kind = "NaN" if bool(torch.isnan(value).any()) else "Inf"
            raise AcmixError(f"{path}: the weights contain {kind} ({key}); the checkpoint is broken")


def read_checkpoint(path: str | os.PathLike[str]) -> LoadedCheckpoint:
    """Read weights (and our metadata, if present) from a checkpoint file, never running its code."""
    from acmix_deploy.fileio import check_input_file

    path = check_input_file(path, "checkpoint")
    try:
        obj = _torch_load(path)
    except pickle.UnpicklingError as exc:
        if not zipfile.is_zipfile(path):
            raise AcmixError(f"{path} is not a readable PyTorch checkpoint (truncated or foreign file)") from None
        raise AcmixError(
            f"{path} was refused: loading it would run code ({_unpickler_reason(exc)})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError / EOFError / IndexError ... on foreign bytes
        first = first_line(exc)
        raise AcmixError(f"{path} is not a readable PyTorch checkpoint (truncated or foreign file): {first}") from None
    meta: dict[str, Any] = {}
    if isinstance(obj, dict) and META_KEY in obj:
        meta = _check_meta(obj[META_KEY], path)
    state = _find_state_dict(obj)
    if state is None:
        raise AcmixError(f"{path} holds no state dict (expected tensors at top level or under 'model' / 'state_dict')")
    _check_finite(state, path)
    return LoadedCheckpoint(state_dict=_strip_prefix(state), meta=meta, path=str(path))


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _find_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict", "module"):
            if _is_state_dict(obj.get(key)):
                return dict(obj[key])
    return None


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def compare_keys(model: nn.Module, state: dict[str, torch.Tensor]) -> LoadReport:
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state and not _derived(k))
    unexpected = sorted(k for k in state if k not in own and not _derived(k))
    mismatched = sorted(
        (k, tuple(state[k].shape), tuple(own[k].shape))
        for k in own
        if k in state and not _derived(k) and state[k].shape != own[k].shape
    )
    return LoadReport(missing, unexpected, mismatched)


def _derived(key: str) -> bool:
    """Geometry-derived Swin buffers are rebuilt by the model, never taken from a file."""
    return key.endswith("attn_mask") or key.endswith("relative_position_index")


def _odd_side(n: int) -> int | None:
    side = int(round(n**0.5))
    return side if side * side == n and side % 2 == 1 else None


def resize_relative_position_tables(
    model: nn.Module, state: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Swin relative position bias tables of another window size, resized to the model's.

    A table holds one value per relative offset, a (2w-1) x (2w-1) grid per head; when a checkpoint is
    loaded at an image size whose (clamped) window differs, each head's grid is resized bicubically
    (as timm does for Swin fine-tuning at another resolution). Returns the new state dict (the given
    one is not changed) and one note per resized key.
    """
    own = model.state_dict()
    out, notes = dict(state), []
    for key, value in state.items():
        target = own.get(key)
        if not key.endswith("relative_position_bias_table") or target is None or value.shape == target.shape:
            continue
        if value.ndim != 2 or target.ndim != 2 or value.shape[1] != target.shape[1]:
            continue  # another head count: left to the shape check
        src, dst = _odd_side(value.shape[0]), _odd_side(target.shape[0])
        if src is None or dst is None:
            continue
        heads = value.shape[1]
        grid = value.detach().double().t().reshape(1, heads, src, src)
        resized = torch.nn.functional.interpolate(grid, size=(dst, dst), mode="bicubic", align_corners=False)
        out[key] = resized.reshape(heads, dst * dst).t().to(value.dtype).contiguous()
        notes.append(f"resized: {key} from window {(src + 1) // 2} to {(dst + 1) // 2} (bicubic)")
    return out, notes


def load_into(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True) -> LoadReport:
    """Load weights; a strict mismatch raises with the list of keys, a non-strict one loads what fits.
    Swin relative position tables trained for another window are resized first (a note in the report)."""
    state, resized = resize_relative_position_tables(model, state)
    adapt = getattr(model, "adapt_state_dict", None)  # a family's own resizing (PVT position embeddings)
    if adapt is not None:
        state, notes = adapt(state)
        resized = resized + notes
    report = compare_keys(model, state)
    report.resized = resized
    if not report.ok and strict:
        listing = "\n  ".join(report.lines()[:40])
        more = "" if len(report.lines()) <= 40 else f"\n  ... and {len(report.lines()) - 40} more"
        raise AcmixError(f"checkpoint does not match the model ({report.summary()}):\n  {listing}{more}")
    mismatched = {k for k, _, _ in report.mismatched}
    usable = {k: v for k, v in state.items() if k not in mismatched}
    model.load_state_dict(usable, strict=False)
    return report


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike[str],
    classes: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write {'model': state_dict, 'acmix_deploy': meta} atomically (loadable with weights_only)."""
    from acmix_deploy import __version__

    card = getattr(model, "card", None)
    meta: dict[str, Any] = {
        "build": getattr(model, "build_config", {}),
        "preprocessing": card.preprocessing() if card is not None else {},
        "toolkit_version": __version__,
    }
    if classes is not None:
        meta["classes"] = list(classes)
    if extra:
        meta.update(extra)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        try:
            torch.save({"model": state, META_KEY: meta}, tmp)
        except RuntimeError as exc:  # torch's zip writer reports ENOSPC / EFBIG this way
            raise AcmixError(f"cannot write {path}: {first_line(exc)} (disk full or a file size limit?)") from None
    return Path(path)
