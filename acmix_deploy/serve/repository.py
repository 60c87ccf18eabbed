"""A Triton model repository from the toolkit's artifacts, written atomically.

Layout: `DIR/<name>/config.pbtxt`, `DIR/<name>/1/model.onnx | model.plan | model.py`, and with an
ensemble `DIR/<name>_preprocess/` (python backend: image bytes -> input tensor) and
`DIR/<name>_classify/` (the ensemble). Everything in a config comes from the artifact itself: tensor
names and types from the ONNX graph or the engine's sidecar, batch limits from the sidecar's profile
or the ONNX batch axis, class names and preprocessing from the ONNX metadata export writes.

Batch rule: a dynamic ONNX batch axis gets `max_batch_size` (option, default 8) and dims without the
batch axis; a static batch-1 export gets max_batch_size 0 (dims include the batch axis, no dynamic
batching); a static batch N > 1 is refused (re-export with a dynamic batch axis).

The repository is built in a temporary folder next to the output, every config is rendered,
parsed back with tritonclient's ModelConfig protobuf and validated, and only then renamed into
place; a failure leaves nothing behind. Modes follow the umask.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acmix_deploy.errors import AcmixError
from acmix_deploy.fileio import atomic_dir, current_umask
from acmix_deploy.preprocess import PRE_KEYS
from acmix_deploy.serve import config as cfg

TEMPLATES = Path(__file__).parent / "templates"
ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 2: "uint8", 9: "bool"}
BACKENDS = ("auto", "python")
LABELS = "labels.txt"


@dataclass
class ArtifactInfo:
    """What a config needs to know about one ONNX file or engine."""

    path: Path
    kind: str  # onnx | engine
    name: str
    inputs: list[cfg.TensorSpec]  # full shapes, -1 = dynamic
    outputs: list[cfg.TensorSpec]
    classes: list[str] | None = None
    preprocessing: dict[str, Any] | None = None
    batch_range: tuple[int, int] | None = None  # engine profile (min, max)
    trt_version: str | None = None
    compute_capability: str | None = None


@dataclass
class RepoOptions:
    backend: str = "auto"  # auto: onnxruntime_onnx / tensorrt_plan by file; python: ONNX Runtime in the python backend
    name: str | None = None
    max_batch_size: int = 8  # for a dynamic ONNX batch axis
    dynamic_batching: bool = True
    queue_delay_us: int = 100
    preferred_batch_sizes: list[int] = field(default_factory=list)
    instance_kind: str = "KIND_AUTO"
    instance_count: int = 1
    ensemble: bool = False
    threads: int | None = None  # ONNX Runtime threads of a python-backend model
    force: bool = False


@dataclass
class PlannedModel:
    spec: cfg.ModelSpec
    files: dict[str, Path | bytes]  # path inside the model folder -> source file or content
    num_classes: int | None = None


@dataclass
class RepoResult:
    root: Path
    models: list[str]
    notes: list[str] = field(default_factory=list)


def triton_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", text).strip("._-")
    return name or "model"


# -- artifacts --------------------------------------------------------------------------------------
def _onnx_tensors(values: Any) -> list[cfg.TensorSpec]:
    out = []
    for v in values:
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        out.append(cfg.TensorSpec(v.name, ONNX_DTYPES.get(t.elem_type, f"onnx-type-{t.elem_type}"), dims))
    return out


def inspect_onnx(path: Path) -> ArtifactInfo:
    from acmix_deploy.onnxio import load_model, metadata_values

    proto = load_model(path, load_external_data=False)
    meta = metadata_values(proto)
    init = {i.name for i in proto.graph.initializer}
    inputs = _onnx_tensors([i for i in proto.graph.input if i.name not in init])
    classes = meta.get("classes") if isinstance(meta.get("classes"), list) else None
    pre = _canonical_pre({k: meta[k] for k in PRE_KEYS if k in meta}) if all(k in meta for k in PRE_KEYS[:4]) else None
    name = str(meta.get("model") or path.stem)
    return ArtifactInfo(path, "onnx", name, inputs, _onnx_tensors(proto.graph.output), classes, pre)


def _canonical_pre(pre: dict[str, Any]) -> dict[str, Any]:
    """The preprocessing a self-contained model.py reads (preprocess.Preprocessing's dict: input_size as
    one int, lists of floats), validated."""
    from acmix_deploy.preprocess import Preprocessing

    return Preprocessing.from_dict(pre).to_dict()


def inspect_engine(path: Path, allow_rtx: bool = False) -> ArtifactInfo:
    """An engine's tensors from its sidecar; `allow_rtx` for the toolkit's own runner (serve), which
    runs TensorRT-RTX engines, unlike Triton's tensorrt_plan backend."""
    from acmix_deploy.runners.sidecar import read_sidecar

    side = read_sidecar(path)
    if side.trt_flavour != "tensorrt" and not allow_rtx:
        raise AcmixError(
            f"{path} is a {side.trt_flavour} engine; Triton's tensorrt_plan backend runs TensorRT proper, not "
            "TensorRT-RTX: serve its ONNX file as onnxruntime_onnx instead"
        )
    info = ArtifactInfo(
        path, "engine", side.model,
        [cfg.TensorSpec(t.name, t.dtype, list(t.shape)) for t in side.inputs],
        [cfg.TensorSpec(t.name, t.dtype, list(t.shape)) for t in side.outputs],
        trt_version=side.trt_version, compute_capability=side.gpu_compute_capability,
    )
    lo, _, hi = side.batch_range
    info.batch_range = (lo, hi)
    if side.onnx_path and Path(side.onnx_path).is_file():
        source = inspect_onnx(Path(side.onnx_path))
        info.classes, info.preprocessing = source.classes, source.preprocessing
    return info


def inspect_artifact(path: str | os.PathLike[str], allow_rtx: bool = False) -> ArtifactInfo:
    path = Path(path)
    if not path.is_file():
        raise AcmixError(f"{path} does not exist")
    if path.suffix.lower() == ".onnx":
        return inspect_onnx(path)
    if path.suffix.lower() in (".engine", ".plan", ".trt"):
        return inspect_engine(path, allow_rtx)
    raise AcmixError(f"{path}: triton-repo takes ONNX files (.onnx) or TensorRT engines (.engine/.plan with their sidecar)")


# -- batch layout -----------------------------------------------------------------------------------
def batch_layout(info: ArtifactInfo, options: RepoOptions) -> tuple[int, list[str]]:
    """(max_batch_size, notes) under the module's batch rule."""
    first = info.inputs[0].dims
    if info.batch_range is not None:  # engine: the sidecar's optimisation profile
        lo, hi = info.batch_range
        if hi <= 1 and first and first[0] == 1:
            return 0, [f"{info.name}: the engine takes batch 1 only: max_batch_size 0, dims include the batch axis"]
        if lo > 1:
            raise AcmixError(f"{info.path}: its profile starts at batch {lo}; Triton sends batches from 1 (rebuild with min batch 1)")
        return hi, []
    if not first:
        raise AcmixError(f"{info.path}: the input {info.inputs[0].name!r} has no dimensions")
    if first[0] == -1:
        if options.max_batch_size < 1:
            raise AcmixError(f"--max-batch-size must be >= 1 for a dynamic batch axis, got {options.max_batch_size}")
        return options.max_batch_size, []
    if first[0] == 1:
        return 0, [f"{info.name}: static batch-1 export: max_batch_size 0, dims include the batch axis and there is "
                   "no dynamic batching (export with --dynamic-batch to batch requests)"]
    raise AcmixError(f"{info.path}: static batch {first[0]}; Triton needs batch 1 or a dynamic batch axis (export with --dynamic-batch)")


def _strip(tensors: list[cfg.TensorSpec], batched: bool, labels: str | None = None) -> list[cfg.TensorSpec]:
    out = []
    for t in tensors:
        dims = t.dims[1:] if batched else [1 if d == -1 and i == 0 else d for i, d in enumerate(t.dims)]
        out.append(cfg.TensorSpec(t.name, t.dtype, dims, labels if len(dims) >= 1 and t is tensors[0] else None))
    return out


def _labels(info: ArtifactInfo, files: dict[str, Path | bytes]) -> str | None:
    if not info.classes:
        return None
    files[LABELS] = ("\n".join(str(c) for c in info.classes) + "\n").encode()
    return LABELS


def network_model(info: ArtifactInfo, options: RepoOptions, name: str) -> tuple[PlannedModel, list[str]]:
    """The network itself: onnxruntime_onnx, tensorrt_plan or the python backend running ONNX Runtime."""
    mbs, notes = batch_layout(info, options)
    files: dict[str, Path | bytes] = {}
    labels = _labels(info, files)
    spec = cfg.ModelSpec(
        name=name, inputs=_strip(info.inputs, mbs > 0), outputs=_strip(info.outputs, mbs > 0, labels),
        max_batch_size=mbs, dynamic_batching=options.dynamic_batching and mbs > 0,
        queue_delay_us=options.queue_delay_us, preferred_batch_sizes=list(options.preferred_batch_sizes),
        instance_kind=options.instance_kind, instance_count=options.instance_count,
        parameters={"source_file": info.path.name},
    )
    if info.kind == "engine":
        if options.backend == "python":
            raise AcmixError("--backend python runs ONNX files; give the engine's ONNX file instead")
        spec.platform = "tensorrt_plan"
        spec.parameters["tensorrt_version"] = str(info.trt_version)
        files["1/model.plan"] = info.path
    elif options.backend == "python":
        spec.backend = "python"
        spec.parameters.update(artifact_file="model.onnx", threads=str(options.threads or 0))
        files["1/model.py"] = TEMPLATES / "onnx_model.py"
        files["1/model.onnx"] = info.path
    else:
        spec.platform = "onnxruntime_onnx"
        files["1/model.onnx"] = info.path
    if mbs == 0 and options.dynamic_batching:
        notes.append(f"{name}: no dynamic_batching at max_batch_size 0")
    return PlannedModel(spec, files, len(info.classes) if info.classes else None), notes


def multi_gpu_engines(infos: list[ArtifactInfo], options: RepoOptions, name: str) -> PlannedModel:
    """Several engines of one model built on different GPUs: one model with cc_model_filenames."""
    ccs = [i.compute_capability for i in infos]
    if None in ccs or len(set(ccs)) != len(ccs):
        raise AcmixError(f"engines of {name} need distinct build GPUs (compute capabilities {ccs}) to share one model")
    if len({i.trt_version for i in infos}) != 1:
        raise AcmixError(f"engines of {name} were built with different TensorRT versions: {sorted({i.trt_version for i in infos})}")
    planned, _ = network_model(infos[0], options, name)
    del planned.files["1/model.plan"]
    for info in infos:
        filename = f"model_sm{info.compute_capability.replace('.', '')}.plan"
        planned.spec.cc_model_filenames[info.compute_capability] = filename
        planned.files[f"1/{filename}"] = info.path
    return planned


def ensemble_models(info: ArtifactInfo, network: PlannedModel, name: str) -> list[PlannedModel]:
    """`<name>_preprocess` (python backend: bytes -> input) and `<name>_classify` (the ensemble)."""
    if info.preprocessing is None:
        raise AcmixError(f"{info.path} carries no preprocessing metadata; --ensemble needs an ONNX file from `acmix-deploy export`")
    mbs = network.spec.max_batch_size
    if mbs == 0:
        raise AcmixError(f"{info.path} has a static batch; --ensemble needs a dynamic batch axis (export with --dynamic-batch)")
    net_in, net_out = network.spec.inputs[0], network.spec.outputs[0]
    pre = cfg.ModelSpec(
        name=f"{name}_preprocess", backend="python", max_batch_size=mbs,
        inputs=[cfg.TensorSpec("image", "bytes", [1])],
        outputs=[cfg.TensorSpec(net_in.name, net_in.dtype, list(net_in.dims))],
        instance_kind="KIND_CPU", parameters={"preprocessing": json.dumps(info.preprocessing)},
    )
    files: dict[str, Path | bytes] = {}
    labels = _labels(info, files)
    ensemble = cfg.ModelSpec(
        name=f"{name}_classify", platform="ensemble", max_batch_size=mbs, instance_kind=None,
        inputs=[cfg.TensorSpec("image", "bytes", [1])],
        outputs=[cfg.TensorSpec(net_out.name, net_out.dtype, list(net_out.dims), labels)],
        steps=[
            cfg.EnsembleStep(pre.name, {"image": "image"}, {net_in.name: "preprocessed"}),
            cfg.EnsembleStep(name, {net_in.name: "preprocessed"}, {net_out.name: net_out.name}),
        ],
    )
    return [
        PlannedModel(pre, {"1/model.py": TEMPLATES / "preprocess_model.py"}),
        PlannedModel(ensemble, {**files, "1/.keep": b""}, network.num_classes),
    ]


def plan(artifacts: list[Path], options: RepoOptions) -> tuple[list[PlannedModel], list[str]]:
    """Every model of the repository, with notes for the user."""
    if options.backend not in BACKENDS:
        raise AcmixError(f"--backend must be one of {', '.join(BACKENDS)}, got {options.backend!r}")
    infos = [inspect_artifact(p) for p in artifacts]
    groups: dict[str, list[ArtifactInfo]] = {}
    for info in infos:
        key = triton_name(options.name if options.name and len(infos) == 1 else info.name)
        groups.setdefault(key, []).append(info)
    planned: list[PlannedModel] = []
    notes: list[str] = []
    for name, group in groups.items():
        if len(group) > 1 and all(i.kind == "engine" for i in group):
            planned.append(multi_gpu_engines(group, options, name))
        elif len(group) > 1:
            raise AcmixError(f"{len(group)} artifacts are named {name!r}; serve them as separate models with --name one at a time")
        else:
            model, more = network_model(group[0], options, name)
            planned.append(model)
            notes += more
        if options.ensemble:
            planned += ensemble_models(group[0], planned[-1], name)
    return planned, notes


def _write_model(root: Path, model: PlannedModel, mask: int) -> None:
    folder = root / model.spec.name
    (folder / "1").mkdir(parents=True, mode=0o777 & ~mask)
    for rel, source in model.files.items():
        dest = folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o777 & ~mask)
        if isinstance(source, bytes):
            dest.write_bytes(source)
        else:
            shutil.copyfile(source, dest)
        os.chmod(dest, 0o666 & ~mask)
    config = cfg.build(model.spec)
    text = cfg.render(config)
    parsed = cfg.parse(text, str(folder / "config.pbtxt"))
    known = os.listdir(root)
    cfg.validate(parsed, folder, model.num_classes, known_models=known)
    (folder / "config.pbtxt").write_text(text)
    os.chmod(folder / "config.pbtxt", 0o666 & ~mask)


def write_repository(models: list[PlannedModel], out: Path, force: bool = False) -> Path:
    """Build the repository in a temporary folder next to `out`, validate it, then rename it into place."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AcmixError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise AcmixError(f"{out} is not empty; pass --force to replace it")
    names = [m.spec.name for m in models]
    if len(set(names)) != len(names):
        raise AcmixError(f"two models would share a name: {names}")
    mask = current_umask()
    with atomic_dir(out, replace=True) as tmp:  # a temp folder beside `out`, swapped in when complete
        for model in models:  # ensembles last: validation checks their steps against the folders present
            if model.spec.platform != "ensemble":
                _write_model(tmp, model, mask)
        for model in models:
            if model.spec.platform == "ensemble":
                _write_model(tmp, model, mask)
    return out


def triton_repo(artifacts: list[str | os.PathLike[str]], out: str | os.PathLike[str], options: RepoOptions | None = None) -> RepoResult:
    """Write a Triton model repository for `artifacts` to `out` (see the module docstring)."""
    options = options or RepoOptions()
    if not artifacts:
        raise AcmixError("give at least one artifact (.onnx or .engine)")
    models, notes = plan([Path(a) for a in artifacts], options)
    root = write_repository(models, Path(out), force=options.force)
    return RepoResult(root, [m.spec.name for m in models], notes)


def runner_repository(artifact: Path, out: Path, runner: str, name: str, max_batch_size: int,
                      queue_delay_us: int, threads: int | None, instance_count: int = 1) -> RepoResult:
    """A one-model repository whose python-backend model runs `artifact` through the toolkit's runners
    (what `acmix-deploy serve ARTIFACT` starts)."""
    artifact = Path(artifact).resolve()
    if artifact.suffix.lower() in (".pth", ".pt", ".ckpt"):
        info = _checkpoint_info(artifact)
    else:
        info = inspect_artifact(artifact, allow_rtx=True)
    options = RepoOptions(name=name, max_batch_size=max_batch_size, queue_delay_us=queue_delay_us, instance_kind="KIND_CPU",
                          instance_count=instance_count)
    mbs, notes = batch_layout(info, options) if info.kind != "checkpoint" else (max_batch_size, [])
    files: dict[str, Path | bytes] = {"1/model.py": TEMPLATES / "runner_model.py"}
    labels = _labels(info, files)
    size = _input_size(info)
    spec = cfg.ModelSpec(
        name=name, backend="python", inputs=_strip(info.inputs, mbs > 0)[:1], outputs=_strip(info.outputs, mbs > 0, labels)[:1],
        max_batch_size=mbs, dynamic_batching=mbs > 0, queue_delay_us=queue_delay_us, instance_kind="KIND_CPU",
        instance_count=instance_count,
        parameters={"artifact_path": str(artifact), "runner": runner, "input_size": str(size), "threads": str(threads or 0),
                    "acmix_deploy_path": str(Path(__file__).resolve().parents[2])},
    )
    root = write_repository([PlannedModel(spec, files, len(info.classes) if info.classes else None)], out, force=True)
    return RepoResult(root, [name], notes)


def _input_size(info: ArtifactInfo) -> int:
    dims = info.inputs[0].dims
    if len(dims) == 4 and dims[-1] > 0:
        return dims[-1]
    if info.preprocessing and "input_size" in info.preprocessing:
        size = info.preprocessing["input_size"]
        return int(size[-1] if isinstance(size, list) else size)
    raise AcmixError(f"{info.path}: the input size is neither in the graph nor in its metadata")


def _checkpoint_info(path: Path) -> ArtifactInfo:
    """A checkpoint served in its PyTorch deploy form: tensors from its model card."""
    from acmix_deploy.export import INPUT_NAME, LOGITS_NAME
    from acmix_deploy.registry import create_model

    model = create_model(None, checkpoint=str(path))
    card = model.card
    pre = card.preprocessing()
    size = int(pre["input_size"][-1] if isinstance(pre["input_size"], (list, tuple)) else pre["input_size"])
    classes = getattr(model, "classes", None)
    return ArtifactInfo(path, "checkpoint", card.name, [cfg.TensorSpec(INPUT_NAME, "float32", [-1, 3, size, size])],
                        [cfg.TensorSpec(LOGITS_NAME, "float32", [-1, int(card.num_classes)])],
                        list(classes) if classes else None, _canonical_pre(pre))
