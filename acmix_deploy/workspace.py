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
LOCK = ".manifest.lock"  # flock target of record(); the manifest itself is replaced atomically

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
    if not path.exists() and not path.is_symlink():
        return []
    if not path.is_file():
        raise AcmixError(f"workspace manifest {path} is not a regular file; remove it to start afresh")
    try:
        records = json.loads(path.read_text())
        if not isinstance(records, list):
            raise TypeError(f"expected a JSON list of records, got {type(records).__name__}")
        entries = [Artifact(**r) if isinstance(r, dict) else _bad_record(r) for r in records]
        for a in entries:
            if not all(isinstance(v, str) for v in (a.kind, a.model, a.path)) or not isinstance(a.meta, dict) \
                    or not isinstance(a.created, (int, float)):
                raise TypeError(f"record {a.path!r} has fields of the wrong type")
        return entries
    except (ValueError, TypeError, RecursionError, UnicodeDecodeError) as exc:
        raise AcmixError(
            f"workspace manifest {path} is unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            "delete it to start afresh"
        ) from None
    except OSError as exc:
        raise AcmixError(f"workspace manifest {path} cannot be read: {exc.strerror or exc}") from None


def _bad_record(record: object) -> Artifact:
    raise TypeError(f"expected a record object, got {type(record).__name__}")


def check_manifest(workspace: str | os.PathLike[str] | None = None) -> None:
    """Fail in a second, before any work, when the workspace manifest that a command will update is
    corrupt (not JSON, the wrong shape, a folder) or the workspace cannot be written."""
    from acmix_deploy.fileio import check_destination

    ws = workspace_dir(workspace)
    _read(ws)
    check_destination(ws / MANIFEST, "workspace manifest")


def record(
    kind: str,
    model: str,
    path: str | os.PathLike[str],
    meta: dict[str, Any] | None = None,
    workspace: str | os.PathLike[str] | None = None,
) -> Artifact:
    """Add an artifact to the manifest (only call this for files that passed their checks)."""
    from acmix_deploy.fileio import locked

    ws = workspace_dir(workspace)
    with locked(ws / LOCK):  # read-modify-write under a lock: concurrent commands keep every entry
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
