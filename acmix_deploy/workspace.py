"""The artifact workspace: where commands put their outputs when no `-o` is given.

Layout: `<workspace>/<model>/<file>` plus `<workspace>/manifest.json`, a list of records
{kind, model, path, created, meta}. Later commands given no input take the newest matching record.
The workspace is `./artifacts` unless `--workspace` or the ACMIX_DEPLOY_WORKSPACE variable says otherwise.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from acmix_deploy.errors import AcmixError
from acmix_deploy.fileio import write_bytes_atomic

ENV_VAR = "ACMIX_DEPLOY_WORKSPACE"
MANIFEST = "manifest.json"

# kinds of artifacts recorded in the manifest
ONNX = "onnx"
ONNX_OPTIMIZED = "onnx-optimized"
ONNX_FP16 = "onnx-fp16"
ONNX_INT8 = "onnx-int8"
ENGINE = "engine"
CHECKPOINT = "checkpoint"


@dataclass
class Artifact:
    kind: str
    model: str
    path: str
    created: float = field(default_factory=time.time)
    meta: dict[str, Any] = field(default_factory=dict)


def workspace_dir(workspace: str | os.PathLike[str] | None = None) -> Path:
    return Path(workspace or os.environ.get(ENV_VAR) or "artifacts")


def default_path(model: str, filename: str, workspace: str | os.PathLike[str] | None = None) -> Path:
    return workspace_dir(workspace) / model / filename


def _read(ws: Path) -> list[Artifact]:
    path = ws / MANIFEST
    if not path.exists():
        return []
    try:
        records = json.loads(path.read_text())
        return [Artifact(**r) for r in records]
    except (ValueError, TypeError) as exc:
        raise AcmixError(f"workspace manifest {path} is unreadable ({exc}); delete it to start afresh") from None


def record(
    kind: str,
    model: str,
    path: str | os.PathLike[str],
    meta: dict[str, Any] | None = None,
    workspace: str | os.PathLike[str] | None = None,
) -> Artifact:
    """Add an artifact to the manifest (only call this for files that passed their checks)."""
    ws = workspace_dir(workspace)
    entries = [a for a in _read(ws) if Path(a.path).resolve() != Path(path).resolve()]
    art = Artifact(kind=kind, model=model, path=str(Path(path).resolve()), meta=meta or {})
    entries.append(art)
    write_bytes_atomic(ws / MANIFEST, json.dumps([asdict(a) for a in entries], indent=2).encode())
    return art


def newest(
    kinds: str | list[str] | tuple[str, ...],
    model: str | None = None,
    workspace: str | os.PathLike[str] | None = None,
) -> Artifact:
    """The newest existing artifact of one of `kinds` (in order of preference ties: newest wins)."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    ws = workspace_dir(workspace)
    found = [
        a
        for a in _read(ws)
        if a.kind in kinds and (model is None or a.model == model) and Path(a.path).exists()
    ]
    if not found:
        what = "/".join(kinds) + (f" of {model}" if model else "")
        raise AcmixError(
            f"no {what} artifact in workspace {ws.resolve()}; run `acmix-deploy export --model NAME` first "
            "or pass a file"
        )
    return max(found, key=lambda a: a.created)
