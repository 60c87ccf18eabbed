"""Top-1 / top-5 accuracy of deployable artifacts on an ImageFolder, compared image by image.

Any mix of PyTorch checkpoints (.pth), ONNX files (.onnx) and TensorRT engines (.engine) is read
over the same images in the same order, each through its own model's preprocessing (checkpoint:
the model card saved in the file; ONNX: the metadata export writes; engine: the metadata of the ONNX
file its sidecar names), so the report can say how often each one picks the same class as the first.
Class order is the sorted folder names; every artifact's output is indexed the same way.

A corrupt image is never counted silently: `on_corrupt="skip"` leaves it out of every artifact's
numbers and lists it; `"stop"` raises one line naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from acmix_deploy.errors import AcmixError, first_line
from acmix_deploy.onnxio import json_value
from acmix_deploy.preprocess import Preprocessing
from acmix_deploy.train.data import ImageFolder, split_dir

ON_CORRUPT = ("skip", "stop")
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


class Unavailable(Exception):
    """This artifact cannot run on this machine (e.g. no TensorRT); reported as a table row."""


@dataclass
class Artifact:
    """One artifact opened through acmix_deploy.runners, with the preprocessing its file describes."""

    path: str
    kind: str
    pre: Preprocessing
    runner: Any  # an activated acmix_deploy.runners.Runner
    num_classes: int | None = None
    classes: list[str] | None = None
    note: str = ""

    def run(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) float32 -> (N, classes) float32 logits, in batches the model takes."""
        meta = next(iter(self.runner.input_metadata().values()))
        outputs = self.runner.infer_chunked(x.astype(meta.dtype, copy=False), chunk=max(1, len(x)))
        return np.asarray(outputs.get("logits", next(iter(outputs.values()))), dtype=np.float32)


@dataclass
class ArtifactResult:
    path: str
    kind: str
    pre: Preprocessing | None = None
    top1_pred: np.ndarray | None = None  # per evaluated image
    correct1: int = 0
    correct5: int = 0
    error: str | None = None  # why the artifact could not run here
    note: str = ""

    @property
    def available(self) -> bool:
        return self.error is None


@dataclass
class EvalReport:
    root: Path
    classes: list[str]
    total: int  # image files found
    results: list[ArtifactResult]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    @property
    def evaluated(self) -> int:
        return self.total - len(self.skipped)

    @property
    def reference(self) -> ArtifactResult | None:
        """The first artifact that ran: deltas and agreement are measured against it."""
        return next((r for r in self.results if r.available), None)

    def top1(self, r: ArtifactResult) -> float:
        return 100.0 * r.correct1 / max(1, self.evaluated)

    def top5(self, r: ArtifactResult) -> float:
        return 100.0 * r.correct5 / max(1, self.evaluated)

    def agreement(self, r: ArtifactResult) -> int:
        """Images on which `r` picks the same class as the reference."""
        ref = self.reference
        if ref is None or not r.available:
            return 0
        return int((r.top1_pred == ref.top1_pred).sum())

    def to_dict(self) -> dict[str, Any]:
        ref = self.reference
        rows = []
        for r in self.results:
            row: dict[str, Any] = {"path": r.path, "kind": r.kind, "available": r.available}
            if r.available:
                row.update(
                    top1=self.top1(r), top5=self.top5(r), correct1=r.correct1, correct5=r.correct5,
                    delta_top1=self.top1(r) - self.top1(ref), delta_correct1=r.correct1 - ref.correct1,
                    top1_agreement=self.agreement(r) / max(1, self.evaluated), agree=self.agreement(r),
                    disagree=self.evaluated - self.agreement(r), preprocessing=r.pre.to_dict(),
                )
            else:
                row["error"] = r.error
            rows.append(row)
        return {
            "data": str(self.root), "classes": self.classes, "images": self.total, "evaluated": self.evaluated,
            "skipped": [{"file": f, "reason": why} for f, why in self.skipped],
            "reference": ref.path if ref else None, "artifacts": rows,
        }


# -- opening artifacts through the runners -------------------------------------------------------
def _open_checkpoint(path: str, model_name: str | None, device: str | None, threads: int | None) -> Artifact:
    import torch

    from acmix_deploy.registry import create_model
    from acmix_deploy.runners import RunnerOptions, TorchRunner

    model = create_model(model_name, checkpoint=path)
    pre = Preprocessing.from_card(model.card)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    options = RunnerOptions(input_size=(pre.height, pre.width), threads=threads, device=dev)
    runner = TorchRunner(model, "torch-eager", options).activate()
    classes = getattr(model, "classes", None)
    return Artifact(path, "pytorch", pre, runner, num_classes=model.card.num_classes, classes=classes, note=str(dev))


def _open_onnx(path: str, fallback: dict[str, Any] | None, threads: int | None) -> Artifact:
    from acmix_deploy.runners import OnnxRuntimeRunner, RunnerOptions

    runner = OnnxRuntimeRunner(path, options=RunnerOptions(threads=threads)).activate()
    meta = runner.metadata()
    shape = next(iter(runner.input_metadata().values())).shape
    if len(shape) != 4:
        raise AcmixError(f"{path}: expected an image input (N, 3, H, W), the model takes {list(shape)}")
    h, w = shape[2], shape[3]
    if h and w and h != w:
        raise AcmixError(f"{path}: only square inputs are supported, the graph takes {h}x{w}")
    pre = Preprocessing.from_metadata(meta, fallback, (h, w), path)
    outputs = runner.session.get_outputs()
    out = next((o for o in outputs if o.name == "logits"), outputs[0])
    classes = json_value(meta["classes"]) if "classes" in meta else None
    last = out.shape[-1] if len(out.shape) == 2 else None
    return Artifact(path, "onnx", pre, runner, num_classes=last if isinstance(last, int) and last > 0 else None,
                    classes=classes if isinstance(classes, list) else None, note=f"preprocessing from {pre.source}")


def _open_engine(path: str, fallback: dict[str, Any] | None) -> Artifact:
    """A TensorRT engine (needs TensorRT and a GPU; else Unavailable). Batch limits come from the
    sidecar, preprocessing from the ONNX file the engine was built from."""
    from acmix_deploy.runners import BackendUnavailable, TensorRTRunner

    try:  # the engine runner checks the sidecar and the engine's sha256 before TensorRT or a GPU
        runner = TensorRTRunner(path, require_gpu_first=False).activate()
    except BackendUnavailable as exc:
        raise Unavailable(str(exc)) from None
    except Exception as exc:  # TensorRT and CUDA raise their own exception classes
        raise Unavailable(first_line(exc)) from None
    meta: dict[str, str] = {}
    if runner.sidecar.onnx_path:  # moved or unreadable: the options (fallback) describe the preprocessing
        from acmix_deploy.onnxio import load_model

        try:
            proto = load_model(runner.sidecar.onnx_path, load_external_data=False)
            meta = {p.key: p.value for p in proto.metadata_props}
        except AcmixError:
            pass
    pre = Preprocessing.from_metadata(meta, fallback, what=path)
    # the runner's warnings (another GPU or TensorRT version than the build's) go with the result
    return Artifact(path, "tensorrt", pre, runner, note="; ".join([f"preprocessing from {pre.source}", *runner.warnings]))


def open_artifact(
    path: str | os.PathLike[str], fallback: dict[str, Any] | None = None, model_name: str | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> Artifact:
    """The artifact at `path` opened through the runner its suffix calls for."""
    from acmix_deploy.fileio import check_input_file

    path = str(path)
    check_input_file(path, "artifact")
    suffix = Path(path).suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return _open_checkpoint(path, model_name, device, threads)
    if suffix == ".onnx":
        return _open_onnx(path, fallback, threads)
    if suffix in ENGINE_SUFFIXES:
        return _open_engine(path, fallback)
    raise AcmixError(
        f"{path}: unknown artifact type {suffix or '(no suffix)'}; expected "
        f"{', '.join(CHECKPOINT_SUFFIXES + ('.onnx',) + ENGINE_SUFFIXES)}"
    )


def _check_classes(runner: Artifact, classes: list[str], root: Path) -> None:
    if runner.num_classes is not None and runner.num_classes != len(classes):
        raise AcmixError(
            f"{runner.path} predicts {runner.num_classes} classes but {root} has {len(classes)} class folders"
        )
    if runner.classes is not None and list(runner.classes) != classes:
        raise AcmixError(
            f"{runner.path} was trained on classes {runner.classes[:6]}{'...' if len(runner.classes) > 6 else ''}, "
            f"which differ from the folders of {root} ({classes[:6]}{'...' if len(classes) > 6 else ''})"
        )


class _MultiPre:
    """Dataset transform: one array per distinct preprocessing, from one decode of the file."""

    def __init__(self, pres: list[Preprocessing]):
        self.pres = pres

    def __call__(self, image: Any, item: Any) -> tuple[np.ndarray, ...]:
        return tuple(p(image) for p in self.pres)


def _collate(items: list[tuple[Any, int, int, list[int]]]) -> tuple[list[np.ndarray], np.ndarray, list[int]]:
    good = [it for it in items if it[0] is not None]
    bad = [i for it in items for i in it[3]]
    if not good:
        return [], np.zeros(0, np.int64), bad
    arrays = [np.stack([it[0][j] for it in good]) for j in range(len(good[0][0]))]
    return arrays, np.asarray([it[1] for it in good], dtype=np.int64), bad


def _open_all(
    artifacts: list[str | os.PathLike[str]], fallback: dict[str, Any] | None, model_name: str | None,
    device: str | None, threads: int | None, classes: list[str], root: Path,
) -> tuple[list[ArtifactResult], list[Artifact | None]]:
    """Open every artifact (None where it cannot run here: its result row says why)."""
    results: list[ArtifactResult] = []
    runners: list[Artifact | None] = []
    for path in artifacts:
        try:
            runner = open_artifact(path, fallback, model_name, device, threads)
        except Unavailable as exc:
            results.append(ArtifactResult(str(path), "tensorrt", error=f"unavailable: {exc}"))
            runners.append(None)
            continue
        _check_classes(runner, classes, root)
        results.append(ArtifactResult(runner.path, runner.kind, pre=runner.pre, note=runner.note))
        runners.append(runner)
    return results, runners


def evaluate(
    artifacts: list[str | os.PathLike[str]],
    data: str | os.PathLike[str],
    batch_size: int = 64,
    on_corrupt: str = "skip",
    workers: int = 0,
    fallback: dict[str, Any] | None = None,
    model_name: str | None = None,
    device: str | None = None,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Evaluate every artifact on DIR/val (or DIR) in one pass over the images."""
    from torch.utils.data import DataLoader

    if not artifacts:
        raise AcmixError("give at least one artifact (.pth, .onnx or .engine)")
    if on_corrupt not in ON_CORRUPT:
        raise AcmixError(f"--on-corrupt must be one of {', '.join(ON_CORRUPT)}, got {on_corrupt!r}")
    if batch_size < 1:
        raise AcmixError(f"--batch-size must be >= 1, got {batch_size}")
    root = split_dir(data, "val")
    dataset = ImageFolder(root)
    classes = dataset.classes

    results, runners = _open_all(artifacts, fallback, model_name, device, threads, classes, root)

    pres: list[Preprocessing] = []
    for r in runners:
        if r is not None and r.pre not in pres:
            pres.append(r.pre)
    report = EvalReport(root, classes, len(dataset), results)
    if not pres:
        return report
    dataset.transform = _MultiPre(pres)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate)
    preds: list[list[np.ndarray]] = [[] for _ in runners]
    done = 0
    for arrays, labels, bad in loader:
        for index in bad:
            file = str(dataset.samples[index][0])
            reason = dataset.load(index)[1] or "unreadable"
            if on_corrupt == "stop":
                raise AcmixError(f"corrupt image {file}: {reason} (--on-corrupt skip leaves such files out)")
            report.skipped.append((file, reason))
        if len(labels):
            for i, runner in enumerate(runners):
                if runner is None:
                    continue
                logits = runner.run(arrays[pres.index(runner.pre)])
                if logits.ndim != 2 or logits.shape[0] != len(labels):
                    raise AcmixError(f"{runner.path} returned shape {logits.shape}, expected ({len(labels)}, classes)")
                if logits.shape[1] != len(classes):
                    raise AcmixError(f"{runner.path} predicts {logits.shape[1]} classes but {root} has {len(classes)}")
                k = min(5, logits.shape[1])
                topk = np.argsort(-logits, axis=1, kind="stable")[:, :k]
                results[i].correct1 += int((topk[:, 0] == labels).sum())
                results[i].correct5 += int((topk == labels[:, None]).any(1).sum())
                preds[i].append(topk[:, 0])
        done += len(labels) + len(bad)
        if progress is not None:
            progress(done, len(dataset))
    for runner in runners:
        if runner is not None:
            runner.runner.deactivate()
    for i, r in enumerate(results):
        if r.available:
            r.top1_pred = np.concatenate(preds[i]) if preds[i] else np.zeros(0, np.int64)
    if report.evaluated == 0:
        raise AcmixError(f"none of the {report.total} images in {root} could be read")
    return report
