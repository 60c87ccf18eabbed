"""The artifact workspace: where commands put their outputs when no `-o` is given.

Layout: `<workspace>/<model>/<file>` plus `<workspace>/manifest.json`, a list of records
{kind, model, path, created, meta}. Later commands given no input take the newest matching record.
The workspace is `./artifacts` unless `--workspace` or the ACMIX_DEPLOY_WORKSPACE variable says otherwise.

Paths are stored relative to the workspace (also the paths in `meta` under PATH_KEYS) and resolved
against the folder the manifest is read from, so a moved or mounted workspace (Docker's
`/workspace/artifacts` vs the host's `$PWD/artifacts`) still finds its files. The recording rule,
one for every command: an output is recorded when it is written inside the workspace, whether by
default or with `-o`; a file written elsewhere is not recorded (`is_inside`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
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

FP32_ONNX = (ONNX, ONNX_OPTIMIZED)  # kinds whose file is an fp32 graph
# meta keys that hold a path of another file (stored relative to the workspace like `path`)
PATH_KEYS = ("source", "onnx")


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


def is_inside(path: str | os.PathLike[str], workspace: str | os.PathLike[str] | None = None) -> bool:
    """True when `path` lies in the workspace folder: the rule that decides whether an output is recorded."""
    try:
        Path(path).resolve().relative_to(workspace_dir(workspace).resolve())
    except ValueError:
        return False
    return True


def _to_stored(path: str | os.PathLike[str], ws: Path) -> str:
    """Workspace-relative POSIX path for a file inside `ws`, else the absolute path."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(ws.resolve()).as_posix()
    except ValueError:
        return str(resolved)


def _from_stored(path: str, ws: Path) -> str:
    """The absolute path of a stored one (relative paths are relative to the workspace read now)."""
    p = Path(path)
    return str(p if p.is_absolute() else (ws.resolve() / p))


def _convert(art: Artifact, ws: Path, fn) -> Artifact:
    meta = {k: (fn(v, ws) if k in PATH_KEYS and isinstance(v, str) and v else v) for k, v in art.meta.items()}
    return Artifact(kind=art.kind, model=art.model, path=fn(art.path, ws), created=art.created, meta=meta)


def _read(ws: Path) -> list[Artifact]:
    """The records with absolute paths (resolved against `ws`)."""
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
        return [_convert(a, ws, _from_stored) for a in entries]
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
    """Add an artifact to the manifest (only call this for files that passed their checks).

    Commands call it only for outputs inside the workspace (`is_inside`); the record stores paths
    relative to the workspace. Read-modify-write under a lock, so concurrent commands keep every entry.
    Returns the record with absolute paths, as readers see it.
    """
    from acmix_deploy.fileio import locked

    ws = workspace_dir(workspace)
    with locked(ws / LOCK):
        entries = [a for a in _read(ws) if Path(a.path).resolve() != Path(path).resolve()]
        art = Artifact(kind=kind, model=model, path=str(Path(path).resolve()), meta=meta or {})
        entries.append(art)
        stored = [asdict(_convert(a, ws, _to_stored)) for a in entries]
        write_bytes_atomic(ws / MANIFEST, json.dumps(stored, indent=2).encode())
    return _convert(_convert(art, ws, _to_stored), ws, _from_stored)


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


def artifacts(workspace: str | os.PathLike[str] | None = None) -> list[Artifact]:
    """Every record whose file still exists, oldest first (absolute paths)."""
    return sorted((a for a in _read(workspace_dir(workspace)) if Path(a.path).exists()), key=lambda a: a.created)


def newest_model(workspace: str | os.PathLike[str] | None = None) -> Artifact:
    """The most recent record of the workspace: its model is "the newest model"."""
    found = artifacts(workspace)
    if not found:
        raise AcmixError(
            f"no ONNX file or engine recorded in workspace {workspace_dir(workspace).resolve()}; "
            "run `acmix-deploy export --model NAME` "
            "first or pass a file"
        )
    return found[-1]


def find(path: str | os.PathLike[str], workspace: str | os.PathLike[str] | None = None) -> Artifact | None:
    """The record of `path`, if the workspace has one."""
    target = Path(path).resolve()
    for art in _read(workspace_dir(workspace)):
        if Path(art.path).resolve() == target:
            return art
    return None


def fp32_source(art: Artifact, workspace: str | os.PathLike[str] | None = None) -> tuple[Artifact | None, list[str]]:
    """Follow an artifact's source chain (engine -> its ONNX -> the fp32 ONNX a precision transform
    read) to the fp32 export it derives from; returns it (or None) and the chain of file names walked."""
    chain = [Path(art.path).name]
    current: Artifact | None = art
    for _ in range(8):  # engine -> int8/fp16 -> optimized -> export at most; a loop guard
        if current is None or current.kind in FP32_ONNX:
            return current, chain
        nxt = current.meta.get("onnx") or current.meta.get("source")
        if not nxt:
            return None, chain
        chain.append(Path(nxt).name)
        found = find(nxt, workspace)
        if found is None and Path(nxt).exists() and current.kind == ENGINE:
            # an engine built straight from an fp32 file that is not recorded (e.g. written elsewhere)
            return None, chain
        current = found
    return None, chain


# -- inputs and outputs of a transform (fp16, int8, engine build) -----------------------------------
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
        check_manifest(workspace)
    return dest


def resolve_input(
    path: str | os.PathLike[str] | None,
    kinds: tuple[str, ...] = (ONNX_OPTIMIZED, ONNX),
    workspace: str | os.PathLike[str] | None = None,
) -> tuple[Path, str | None, bool]:
    """(path, workspace model name or None, taken_from_workspace) for an optional input file.

    With no path: the newest model of the workspace (the model of its most recent record), and of
    its files the newest of `kinds`."""
    if path is not None:
        return Path(path), None, False
    art = newest_input(kinds, workspace)
    return Path(art.path), art.model, True


def newest_input(kinds: tuple[str, ...], workspace: str | os.PathLike[str] | None = None) -> Artifact:
    """The newest artifact of `kinds` of the workspace's newest model (else of any model)."""
    latest = newest_model(workspace)
    try:
        return newest(kinds, model=latest.model, workspace=workspace)
    except AcmixError:
        return newest(kinds, workspace=workspace)


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
    return default_path(model, stem + suffix, workspace)
