"""PyTorch -> verified ONNX: deploy form, torch.export-based exporter, readable names, metadata, parity.

`export_onnx` builds the registered model (optionally with a checkpoint), converts every ACmix / Swin
block to its deploy form (acmix_deploy.nn.deploy), exports with the torch.export-based exporter
(pinned: the TorchScript exporter's graphs did not compile in TensorRT-RTX), renames nodes after their
module paths, writes the preprocessing metadata, optionally runs the graph passes, checks the file with
onnx.checker (full check), and verifies it in ONNX Runtime against the *reference* PyTorch model (not
the deploy form) before anything reaches the output path.

The same export twice gives byte-identical files: weights are stored inline, exporter metadata (stack
traces, FX node text) is dropped, and no timestamps are written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from acmix_deploy import validate
from acmix_deploy import workspace as ws
from acmix_deploy.errors import AcmixError, ParityError, first_line
from acmix_deploy.fileio import check_collisions, sha256_file, write_bytes_atomic

INPUT_NAME = "images"
LOGITS_NAME = "logits"
FEATURE_NAMES = ("stage1", "stage2", "stage3", "stage4")
DEFAULT_OPSET = 18
VERIFY_IMAGES = 2
VERIFY_SEED = 0
METADATA_KEYS = (
    "model", "input_size", "mean", "std", "crop_ratio", "interpolation", "num_classes",
    "toolkit_version", "checkpoint_sha256",
)


@dataclass
class ExportResult:
    """What an export produced; `parity` holds one PASSED/FAILED line per output (empty: not verified)."""

    path: Path
    model_name: str
    img_size: int
    batch: int | None  # None: dynamic batch
    features: bool
    output_names: list[str]
    parity: list[str] = field(default_factory=list)
    parity_results: list[Any] = field(default_factory=list)
    optimized: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    bytes: int = 0
    sha256: str = ""
    recorded: bool = False

    @property
    def verified(self) -> bool:
        return bool(self.parity_results) and all(r.passed for r in self.parity_results)


# --------------------------------------------------------------------------------------------------
# input size checks (shared with every command that feeds an exported file)
# --------------------------------------------------------------------------------------------------
def _image_input(onnx_model: Any):
    """The image input (named INPUT_NAME, else the first graph input that is not an initializer) of a
    path or an onnx.ModelProto; external weights are not read."""
    import onnx

    from acmix_deploy.onnxio import load_model

    model = onnx_model if isinstance(onnx_model, onnx.ModelProto) else load_model(onnx_model, load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs:
        raise AcmixError("the ONNX model has no graph input")
    return next((i for i in inputs if i.name == INPUT_NAME), inputs[0])


def check_input_size(onnx_model: Any, height: int, width: int) -> None:
    """Raise a one-line AcmixError unless the model's image input accepts (N, 3, height, width).

    `onnx_model`: a path or an onnx.ModelProto. H and W are fixed at export (positions, halos and
    masks are constants of the resolution); symbolic spatial dims accept any size.
    """
    inp = _image_input(onnx_model)
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise AcmixError(f"ONNX input {inp.name!r} has {len(dims)} dims; expected (N, 3, H, W)")
    fixed = [d.dim_value if d.HasField("dim_value") else None for d in dims[2:]]
    if any(f is not None and f != want for f, want in zip(fixed, (height, width))):
        got = "x".join(str(f) if f is not None else "?" for f in fixed)
        raise AcmixError(
            f"the ONNX model takes {got} images (fixed at export), not {height}x{width}; "
            f"re-export with --img-size {height}" + ("" if height == width else " (square sizes only)")
        )


def input_size(onnx_model: Any) -> tuple[int, int] | None:
    """(H, W) of a model's image input when fixed, else None."""
    dims = _image_input(onnx_model).type.tensor_type.shape.dim
    if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
        return int(dims[2].dim_value), int(dims[3].dim_value)
    return None


# --------------------------------------------------------------------------------------------------
# building the ONNX model
# --------------------------------------------------------------------------------------------------
def default_filename(model_name: str, img_size: int, batch: int, dynamic_batch: bool, features: bool) -> str:
    """`<model>_<size>[_bN|_dyn][_features].onnx` (batch 1 adds no suffix)."""
    suffix = "_dyn" if dynamic_batch else (f"_b{batch}" if batch != 1 else "")
    return f"{model_name}_{img_size}{suffix}{'_features' if features else ''}.onnx"


def _wrapper(model, features: bool):
    """The module that is exported: logits, or the four stage maps as a tuple."""
    import torch.nn as nn

    class Features(nn.Module):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net

        def forward(self, images):
            return tuple(self.net.forward_stages(images))

    if not features:
        return model
    if not hasattr(model, "forward_stages"):
        raise AcmixError(f"{type(model).__name__} has no stage outputs to export with --features")
    return Features(model)


def _metadata(card, img_size: int, checkpoint_sha: str | None, extra: dict[str, Any]) -> dict[str, str]:
    from acmix_deploy import __version__

    values: dict[str, Any] = {
        "model": card.name,
        "input_size": [3, img_size, img_size],
        "mean": [float(v) for v in card.mean],
        "std": [float(v) for v in card.std],
        "crop_ratio": float(card.crop_ratio),
        "interpolation": card.interpolation,
        "num_classes": int(card.num_classes),
        "toolkit_version": __version__,
        "checkpoint_sha256": checkpoint_sha,
        **extra,
    }
    return {k: json.dumps(v, sort_keys=True) for k, v in values.items()}


def to_onnx_proto(
    deploy_model,
    img_size: int,
    batch: int = 1,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    features: bool = False,
    metadata: dict[str, str] | None = None,
    graph_name: str = "main_graph",
):
    """Export a (deploy-form) module with the torch.export-based exporter; deterministic ModelProto."""
    import logging
    import warnings

    # The exporter warns once per torchvision operator when torchvision is absent; we export none.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

    import onnx
    import torch

    from acmix_deploy.onnx_names import rename_nodes, strip_exporter_metadata

    module = _wrapper(deploy_model, features).eval()
    example = torch.zeros(batch if not dynamic_batch else 2, 3, img_size, img_size)
    output_names = list(FEATURE_NAMES) if features else [LOGITS_NAME]
    kwargs: dict[str, Any] = {}
    if dynamic_batch:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1)},)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                module, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                output_names=output_names, external_data=False, optimize=False, verify=False,
                report=False, verbose=False, **kwargs,
            )
            _cleanup_graph(program)
        except AcmixError:
            raise
        except Exception as exc:  # the exporter raises many types; keep the first line
            first = first_line(exc)
            raise AcmixError(f"ONNX export failed: {first}") from None
    proto = program.model_proto
    # features exports wrap the network as `net`: drop that scope so paths match the logits export
    rename_nodes(proto, root="net" if features else "")
    strip_exporter_metadata(proto)
    if dynamic_batch:
        _name_batch_dims(proto)
    proto.graph.name = graph_name
    del proto.metadata_props[:]
    for key, value in sorted((metadata or {}).items()):
        proto.metadata_props.add(key=key, value=value)
    if proto.ir_version > onnx.IR_VERSION:  # never newer than the installed checker understands
        proto.ir_version = onnx.IR_VERSION
    return proto


def _cleanup_graph(program) -> None:
    """Constant folding, no-op removal, BatchNorm -> Conv folding, dead code, constant lifting, CSE.

    The exporter's own `optimize` runs onnxscript's whole pattern-rewrite rule set, which costs half
    the export time on ACmix graphs; on ResNet-ACmix-50 it gave the same graph size as these rules.
    Falls back to it when onnxscript's internals differ from the ones this was written against.
    """
    try:
        import onnx_ir as ir
        import onnx_ir.passes.common as common
        from onnxscript import rewriter
        from onnxscript.optimizer import _constant_folding
        from onnxscript.rewriter import _fuse_batchnorm, _no_op, _remove_optional_bias

        rules = [*_no_op.rules, *_fuse_batchnorm.rules, *_remove_optional_bias.rules]
        fold = _constant_folding.FoldConstantsPass(
            shape_inference=True,
            input_size_limit=_constant_folding.DEFAULT_CONSTANT_FOLD_INPUT_SIZE_LIMIT,
            output_size_limit=_constant_folding.DEFAULT_CONSTANT_FOLD_OUTPUT_SIZE_LIMIT,
        )
    except (ImportError, AttributeError):
        program.optimize()
        return
    loop = ir.passes.PassManager(
        [fold, rewriter.RewritePass(rules), common.RemoveUnusedNodesPass()], steps=2, early_stop=True
    )
    ir.passes.Sequential(
        common.InlinePass(),
        loop,
        common.RemoveUnusedNodesPass(),
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.DeduplicateInitializersPass(),
        common.CommonSubexpressionEliminationPass(),
        common.NameFixPass(),
    )(program.model)


def _name_batch_dims(proto) -> None:
    """Give the dynamic batch dimension of every graph input/output the same name, 'batch'."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"


def _check(proto) -> None:
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError, shape inference errors
        first = first_line(exc)
        raise AcmixError(f"the exported model fails onnx.checker: {first}") from None


# --------------------------------------------------------------------------------------------------
# verification
# --------------------------------------------------------------------------------------------------
def verification_images(card, img_size: int, n: int = VERIFY_IMAGES, seed: int = VERIFY_SEED) -> np.ndarray:
    """Seeded uniform [0, 1] images, normalised with the card's mean/std: the range real inputs have."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, 3, img_size, img_size), dtype=np.float32)
    mean = np.asarray(card.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(card.std, dtype=np.float32).reshape(1, 3, 1, 1)
    return ((images - mean) / std).astype(np.float32)


def reference_outputs(model, images: np.ndarray, features: bool) -> dict[str, np.ndarray]:
    import torch

    with torch.no_grad():
        x = torch.from_numpy(images)
        if features:
            return {n: t.numpy() for n, t in zip(FEATURE_NAMES, model.forward_stages(x))}
        return {LOGITS_NAME: model(x).numpy()}


def onnx_outputs(model_bytes: bytes, images: np.ndarray, batch: int | None, threads: int | None = None) -> dict[str, np.ndarray]:
    """Run the ONNX model over `images` in chunks of its fixed batch (all at once when dynamic)."""
    from acmix_deploy.runners import OnnxRuntimeRunner, RunnerOptions

    with OnnxRuntimeRunner(model_bytes, options=RunnerOptions(threads=threads)) as runner:
        return runner.infer_chunked(images, chunk=batch or len(images))


def verify_model(reference_model, model_bytes: bytes, card, img_size: int, batch: int | None, features: bool,
           n_images: int = VERIFY_IMAGES):
    """ParityResults of the ONNX model against the reference PyTorch model on seeded images."""
    from acmix_deploy.parity import FP32_TOL, compare

    n = max(n_images, batch or 1)
    images = verification_images(card, img_size, n)
    ref = reference_outputs(reference_model, images, features)
    got = onnx_outputs(model_bytes, images, batch)
    missing = sorted(set(ref) - set(got))
    if missing:
        raise ParityError(f"the ONNX model lacks the output(s) {', '.join(missing)}")
    return [compare(ref[name], got[name], FP32_TOL, name=name) for name in ref]


def settle_batchnorm(model, card, img_size: int, n_images: int = 8, seed: int = 1, reference=None) -> bool:
    """Give a random-init model BatchNorm statistics from one batch of seeded images (in place).

    Freshly initialised ResNets keep BatchNorm's identity statistics, so activations grow block after
    block (ResNet-ACmix-50 at 224 px reaches attention logits of 1e12) and any two float32
    implementations disagree: parity would test the initialisation, not the export. With settled
    statistics activations have a trained network's scale. Models without BatchNorm are untouched
    (returns False). With `reference`, `model` is its deploy form (same function, same BatchNorm module
    paths, many times faster in eager PyTorch): the statistics are computed there and copied into both.
    """
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    images = torch.from_numpy(verification_images(card, img_size, n_images, seed))
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: exactly this batch's statistics
        m.train()
    with torch.no_grad():
        model(images)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
        m.eval()
    if reference is not None:
        settled = dict(model.named_buffers())
        with torch.no_grad():
            for name, buf in reference.named_buffers():
                # BatchNorms the deploy form folded away (SAN's weight network) keep their statistics
                if name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked") and name in settled:
                    buf.copy_(settled[name])
    return True


# --------------------------------------------------------------------------------------------------
# optional graph passes
# --------------------------------------------------------------------------------------------------
def require_graphsurgeon() -> None:
    """The graph passes need onnx-graphsurgeon; without it, say so in one line before any work."""
    try:
        import onnx_graphsurgeon  # noqa: F401
    except ImportError:
        raise AcmixError(
            "the graph passes need onnx-graphsurgeon (pip install onnx-graphsurgeon); "
            "export with --no-optimize (optimize=False) to write the verified ONNX without them"
        ) from None


def _run_passes(proto, log: Callable[[str], None], notes: list[str]):
    """The default graph-pass pipeline (parity-gated inside); export times nothing, so no latency runs."""
    from acmix_deploy.passes.pipeline import optimize_model

    optimized, report = optimize_model(proto, latency_runs=0)
    note = f"graph passes applied: {report.nodes_before} -> {report.nodes_after} nodes"
    notes.append(note)
    log(note)
    return optimized


# --------------------------------------------------------------------------------------------------
# the export command's library function
# --------------------------------------------------------------------------------------------------
def reference_and_deploy(
    model_name: str,
    checkpoint: str | os.PathLike[str] | Any | None = None,  # a path or a checkpoint.LoadedCheckpoint
    build: dict[str, Any] | None = None,
    deploy_options: dict[str, Any] | None = None,
):
    """(reference model, its deploy form, whether BatchNorm was settled) exactly as export_onnx builds
    them: random-init models are seeded (reproducible files) and get settled BatchNorm statistics.
    Benchmarks and tests use this to run the same reference the export verified against."""
    import torch

    from acmix_deploy.nn.deploy import switch_to_deploy
    from acmix_deploy.registry import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        reference = create_model(model_name, checkpoint=checkpoint, **(build or {}))
    size = int(reference.card.input_size)
    deployed = switch_to_deploy(reference, size, **(deploy_options or {}))
    settled = checkpoint is None and settle_batchnorm(deployed, reference.card, size, reference=reference)
    return reference, deployed, settled


def _probe_writable(dest: Path) -> None:
    """Fail in a second, not after the export, when the output cannot be written."""
    from acmix_deploy.fileio import check_destination, probe_write

    if dest.is_dir():
        raise AcmixError(f"output {dest} is a directory; give a file path such as {dest / 'model.onnx'}")
    check_destination(dest, "-o")
    probe_write(dest)


def _check_before_work(
    opset: int, img_size: int | None, batch: int, checkpoint: str | os.PathLike[str] | None,
    output: str | os.PathLike[str] | None, workspace: str | os.PathLike[str] | None,
) -> None:
    """Options, the output (writable, not the checkpoint) and the manifest: all refused in a second."""
    validate.opset(opset)
    validate.img_size(img_size, batch=batch)
    if output is not None:
        _probe_writable(Path(output))
        check_collisions({"--checkpoint": checkpoint}, {"-o": output})
    else:
        ws.check_manifest(workspace)  # a corrupt manifest fails now, not after the export


def _check_arguments(batch: int, dynamic_batch: bool, shift: str, optimize: bool) -> None:
    from acmix_deploy.nn.shift import SHIFT_MODES

    if batch < 1:
        raise AcmixError(f"--batch must be >= 1, got {batch}")
    if dynamic_batch and batch != 1:
        raise AcmixError("give either --batch N or --dynamic-batch, not both")
    if shift not in SHIFT_MODES:
        raise AcmixError(f"unknown shift mode {shift!r}; choose one of {', '.join(SHIFT_MODES)}")
    if optimize:
        require_graphsurgeon()


def _build_request(model_name: str | None, loaded: Any, img_size: int | None, batch: int, shift: str,
                   overrides: dict[str, Any] | None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(model name, the create_model overrides as given, what to build with): the checkpoint's
    metadata fills what the caller left out; an unknown name fails here, before any work."""
    from acmix_deploy.registry import build_defaults, get_card

    model_name, overrides = build_defaults(loaded.meta if loaded is not None else None, model_name,
                                           dict(overrides or {}))
    if model_name is None:
        raise AcmixError("give --model NAME (the checkpoint does not say which model it holds)")
    card = get_card(model_name)
    requested = img_size if img_size is not None else overrides.get("img_size")
    if img_size is None:
        validate.img_size(requested, "img_size override", batch)
    build = dict(overrides)
    if requested is not None:
        build["img_size"] = int(requested)  # else: the checkpoint's training size, else the card's
    if card.is_acmix:
        build["shift"] = shift
    return model_name, overrides, build


def _destination(output: Any, workspace: Any, checkpoint: Any, model_name: str, filename: str) -> Path:
    if output is not None:
        return Path(output)  # checked in _check_before_work
    dest = ws.default_path(model_name, filename, workspace)
    _probe_writable(dest)
    check_collisions({"--checkpoint": checkpoint}, {"output": dest})
    return dest


def _export_bytes(deployed: Any, model_name: str, spec: dict[str, Any],
                  meta: dict[str, str], log: Callable[[str], None], notes: list[str]) -> bytes:
    """The serialized ONNX model: export, the opset check, the graph passes, the full checker."""
    size, batch, dynamic, features, opset = (spec[k] for k in ("size", "batch", "dynamic_batch", "features", "opset"))
    log(f"exporting {model_name} at {size}x{size} (opset {opset}, "
        f"{'dynamic batch' if dynamic else f'batch {batch}'}{', features' if features else ''})")
    proto = to_onnx_proto(deployed, size, batch, dynamic, opset, features, meta, graph_name=model_name)
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise AcmixError(f"the exporter cannot write opset {opset} (it wrote {written}); nothing written")
    if spec["optimize"]:
        proto = _run_passes(proto, log, notes)
    _check(proto)
    return proto.SerializeToString()


def _verify(result: ExportResult, reference: Any, data: bytes, card: Any, log: Callable[[str], None]) -> None:
    """Parity against the PyTorch reference in ONNX Runtime; ParityError (nothing written) on failure."""
    log("verifying against the PyTorch reference model in ONNX Runtime")
    results = verify_model(reference, data, card, result.img_size, result.batch, result.features)
    result.parity_results = list(results)
    result.parity = [r.line() for r in results]
    for line in result.parity:
        log(line)
    if not all(r.passed for r in results):
        failed = "; ".join(r.line() for r in results if not r.passed)
        raise ParityError(f"ONNX output differs from the PyTorch reference, nothing written: {failed}")


def _record(result: ExportResult, spec: dict[str, Any], checkpoint: Any, checkpoint_sha: str | None,
            overrides: dict[str, Any], deploy_options: dict[str, Any] | None, workspace: Any) -> None:
    """The workspace's recording rule: outputs inside the workspace are recorded."""
    if not ws.is_inside(result.path, workspace):
        return
    ws.record(ws.ONNX, result.model_name, result.path, meta={
        "img_size": result.img_size, "batch": result.batch, "dynamic_batch": spec["dynamic_batch"],
        "features": result.features, "opset": spec["opset"], "shift": spec["shift"],
        "optimized": spec["optimize"], "verified": spec["verify"], "checkpoint_sha256": checkpoint_sha,
        "overrides": dict(overrides), "sha256": result.sha256,
        "checkpoint": str(Path(checkpoint).resolve()) if checkpoint is not None else None,
        "deploy_options": dict(deploy_options or {}),
    }, workspace=workspace)
    result.recorded = True


def export_onnx(
    model_name: str | None,
    checkpoint: str | os.PathLike[str] | None = None,
    img_size: int | None = None,
    batch: int = 1,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    shift: str = "group",
    features: bool = False,
    output: str | os.PathLike[str] | None = None,
    verify: bool = True,
    optimize: bool = True,
    workspace: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    deploy_options: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export a registered model to a verified ONNX file (see the module docstring).

    Without `output` the file goes to the workspace (`<workspace>/<model>/<default_filename>`) and is
    recorded there as an ONNX artifact. `overrides` are extra create_model overrides (width, k_att,
    window, ...); `deploy_options` go to switch_to_deploy (conv_form, attn_block, attn_mode).
    Raises AcmixError for bad input and ParityError (nothing written) when verification fails.
    """
    log = log or (lambda _msg: None)
    t0 = time.perf_counter()
    _check_arguments(batch, dynamic_batch, shift, optimize)
    _check_before_work(opset, img_size, batch, checkpoint, output, workspace)
    loaded = None
    if checkpoint is not None:
        from acmix_deploy.checkpoint import read_checkpoint

        loaded = read_checkpoint(checkpoint)  # loaded once: the reference model is built from these tensors
    model_name, overrides, build = _build_request(model_name, loaded, img_size, batch, shift, overrides)
    reference, deployed, settled = reference_and_deploy(model_name, loaded, build, deploy_options)
    card = reference.card
    size = int(card.input_size)
    dest = _destination(output, workspace, checkpoint, model_name,
                        default_filename(model_name, size, batch, dynamic_batch, features))
    notes: list[str] = []
    checkpoint_sha = sha256_file(checkpoint) if checkpoint is not None else None
    if settled:
        notes.append("no checkpoint: random weights, BatchNorm statistics settled on seeded images")
        log(notes[-1])
    extra: dict[str, Any] = {"outputs": list(FEATURE_NAMES) if features else [LOGITS_NAME],
                             "shift": shift if card.is_acmix else None}
    if getattr(reference, "classes", None):
        extra["classes"] = list(reference.classes)
    meta = _metadata(card, size, checkpoint_sha, extra)
    spec = {"size": size, "batch": batch, "dynamic_batch": dynamic_batch, "features": features, "opset": opset,
            "optimize": optimize, "verify": bool(verify), "shift": shift}
    data = _export_bytes(deployed, model_name, spec, meta, log, notes)
    result = ExportResult(
        path=dest, model_name=model_name, img_size=size, batch=None if dynamic_batch else batch,
        features=features, output_names=list(FEATURE_NAMES) if features else [LOGITS_NAME],
        optimized=optimize, notes=notes, bytes=len(data),
    )
    if verify:
        _verify(result, reference, data, card, log)
    write_bytes_atomic(dest, data)
    result.sha256 = hashlib.sha256(data).hexdigest()
    _record(result, spec, checkpoint, checkpoint_sha, overrides, deploy_options, workspace)
    result.seconds = time.perf_counter() - t0
    return result
