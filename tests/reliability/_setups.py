"""Builders of the bad inputs the catalogue feeds the commands (each writes into a case folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path


class Evil:
    """Pickles as a call of os.system: loading the file would run a shell command."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def empty(d: Path, name: str) -> None:
    (d / name).write_bytes(b"")


def garbage(d: Path, name: str) -> None:
    (d / name).write_bytes(b"this is not a model, just text\n" * 10)


def fifo(d: Path, name: str) -> None:
    os.mkfifo(d / name)


def folder(d: Path, name: str) -> None:
    (d / name).mkdir()
    (d / name / "keep.txt").write_text("mine\n")


def hardlink(d: Path, src: str, name: str) -> None:
    os.link(d / src, d / name)


def symlink(d: Path, src: str, name: str) -> None:
    os.symlink(d / src, d / name)


def manifest(d: Path, content: str | None) -> None:
    """artifacts/manifest.json with `content`, or a folder in its place when None."""
    path = d / "artifacts" / "manifest.json"
    path.parent.mkdir(exist_ok=True)
    if content is None:
        path.mkdir()
        (path / "x").write_text("x")
    else:
        path.write_text(content)


def onnx_edit(d: Path, name: str, nan: bool = False, meta: dict[str, str] | None = None) -> None:
    """A copy of tiny.onnx with a NaN in its first conv weight and/or replaced metadata values."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(d / "tiny.onnx"))
    if nan:
        conv = next(n for n in model.graph.node if n.op_type == "Conv")
        init = next(i for i in model.graph.initializer if i.name == conv.input[1])
        values = numpy_helper.to_array(init).copy()
        values.flat[0] = np.nan
        init.CopyFrom(numpy_helper.from_array(values, init.name))
    for key, value in (meta or {}).items():
        props = {p.key: p for p in model.metadata_props}
        if key in props:
            props[key].value = value
        else:
            model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    (d / name).write_bytes(model.SerializeToString())


def checkpoint(d: Path, name: str, meta=None, nan: bool = False, evil: bool = False) -> None:
    """A checkpoint of tiny.pth's weights with other metadata, a NaN weight, or a pickled os.system."""
    import torch

    obj = torch.load(d / "tiny.pth", weights_only=True)
    if meta is not None:
        obj["acmix_deploy"] = meta
    if nan:
        key = next(k for k, v in obj["model"].items() if v.is_floating_point() and v.ndim == 4)
        obj["model"][key] = obj["model"][key].clone()
        obj["model"][key].view(-1)[0] = float("nan")
    if evil:
        obj["config"] = Evil()
    torch.save(obj, d / name)


def sidecar(d: Path, content: str | None) -> None:
    """Replace tiny.engine.json with `content` (None: a folder in its place)."""
    path = d / "tiny.engine.json"
    path.unlink()
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)


def flip_engine(d: Path) -> None:
    """One changed byte in the engine: the sidecar's sha256 no longer matches."""
    path = d / "tiny.engine"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def sidecar_field(d: Path, **fields) -> None:
    path = d / "tiny.engine.json"
    doc = json.loads(path.read_text())
    doc.update(fields)
    path.write_text(json.dumps(doc))


def foreign_folder(d: Path, name: str) -> None:
    """A folder with the user's own files, some of them looking like a dataset."""
    (d / name / "train" / "0").mkdir(parents=True)
    (d / name / "train" / "0" / "0001.png").write_bytes(b"\x89PNG user file")
    (d / name / "notes.txt").write_text("my notes\n")
