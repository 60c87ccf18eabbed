"""export -> fp16 / int8 -> TensorRT engine, as one library call (`acmix-deploy build-trt` renders it).

Each step is checked by the step itself (export against PyTorch, fp16 / int8 against fp32; a step
that fails writes nothing), and every input and output is checked before the first long step, so a
refusal never comes after minutes of export or calibration.

    from acmix_deploy.pipeline import PipelineOptions, build_pipeline
    result = build_pipeline(PipelineOptions(model="resnet_acmix26", precision="fp16"))
    result.engine.path, result.verification   # engine file, PASSED / FAILED lines of every check
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acmix_deploy.errors import AcmixError
from acmix_deploy.precision.int8_options import DEFAULT_METHOD, DEFAULT_SPLIT

if TYPE_CHECKING:
    from acmix_deploy.export import ExportResult
    from acmix_deploy.precision.fp16 import Fp16Result
    from acmix_deploy.precision.int8 import Int8Result
    from acmix_deploy.trt.build import BuildResult

PRECISIONS = ("fp32", "fp16", "int8")
Log = Callable[[str], object]


@dataclass
class PipelineOptions:
    """What to build. Give `model` (a registry name: exported first) or `onnx` (a file), or neither
    (the newest fp32 export in the workspace). `workspace` is the artifact folder, `trt_workspace`
    TensorRT's scratch-memory limit."""

    model: str | None = None
    onnx: Path | None = None
    checkpoint: Path | None = None
    img_size: int | None = None  # with `model`: the export's size (default: the card's)
    overrides: dict[str, Any] = field(default_factory=dict)  # with `model`: create_model overrides
    precision: str = "fp32"  # fp32 | fp16 | int8 (the ONNX graph's precision, see acmix_deploy.precision)
    min_cosine: float = 0.999  # fp16 gate
    calib_data: str | None = None  # int8 (required): image folder, uint8 NHWC .npy, or "random"
    calib_size: int = 256
    method: str = DEFAULT_METHOD
    split: str = DEFAULT_SPLIT
    rest: str = "fp16"
    min_agreement: float = 0.97  # int8 gate (real images)
    holdout: int | None = None  # held-out inputs of the fp16 / int8 check (default: the step's own)
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    trt_workspace: str | int = "4GiB"
    runtime: str = "auto"
    timing_cache: Path | None = None
    opt_level: int | None = None
    compute_capabilities: list[str] | None = None
    output: Path | None = None  # the engine (sidecar: <engine>.json); default: in the workspace
    workspace: Path | None = None
    progress: bool = True  # TensorRT's build progress bars (stderr)

    def check(self) -> None:
        """One-line errors for contradictory options (before anything runs)."""
        if self.onnx is not None and self.model is not None:
            raise AcmixError("give --onnx or --model, not both")
        if self.precision not in PRECISIONS:
            raise AcmixError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.precision == "int8" and self.calib_data is None:
            raise AcmixError("--int8 needs --calib-data DIR|FILE.npy|random")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise AcmixError(f"batches must satisfy 1 <= --min-batch <= --opt-batch <= --max-batch, "
                             f"got {self.min_batch}, {self.opt_batch}, {self.max_batch}")


@dataclass
class PipelineResult:
    """What the pipeline made: the fp32 ONNX it started from, the verified fp16 / int8 ONNX (if any),
    the engine, and the verification of every step."""

    model: str | None
    onnx: Path
    engine: BuildResult
    trt: tuple[str, str]  # (flavour, version)
    export: ExportResult | None = None
    fp16: Fp16Result | None = None
    int8: Int8Result | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def precision_onnx(self) -> Path | None:
        step = self.fp16 or self.int8
        return Path(step.path) if step is not None and step.path is not None else None

    @property
    def verification(self) -> list[str]:
        """PASSED / FAILED lines: the export's parity (when this run exported) and the precision check."""
        lines = list(self.export.parity) if self.export is not None else []
        step = self.fp16 or self.int8
        return lines + ([step.report.line()] if step is not None else [])

    @property
    def verified(self) -> bool:
        step = self.fp16 or self.int8
        return step is None or step.report.passed or not step.report.meaningful


def build_pipeline(options: PipelineOptions, log: Log | None = None, note: Log | None = None) -> PipelineResult:
    """Run export (or take an ONNX) -> fp16 / int8 (verified) -> engine + sidecar.

    `log` hears each phase, `note` each result line (default: `log`). A `log` with a `hold()` context
    manager (acmix_deploy.progress.Phases) is held while TensorRT draws its own build progress."""
    from acmix_deploy.runners.trt_import import load_trt

    log = log or (lambda _m: None)
    note = note or log
    options.check()
    check_destinations(options)
    _, flavour, version = load_trt(options.runtime)  # fail fast, before exporting or calibrating
    note(f"TensorRT: {flavour} {version}")
    export, path, name = _source(options, log, note)
    fp16 = _fp16(options, path, name, log, note) if options.precision == "fp16" else None
    int8 = _int8(options, path, name, log, note) if options.precision == "int8" else None
    step = fp16 or int8
    hold = getattr(log, "hold", contextlib.nullcontext)
    with hold():
        engine = _build(options, Path(step.path) if step is not None else path, name, flavour)
    warnings = list(engine.warnings)
    if int8 is not None and not int8.report.meaningful:
        warnings.insert(0, "int8 calibrated on random noise: accuracy numbers are not meaningful")
    return PipelineResult(name, path, engine, (flavour, version), export, fp16, int8, warnings)


def check_destinations(options: PipelineOptions) -> None:
    """Inputs exist and every output (engine, sidecar, timing cache) is writable and none of them an
    input, before export or calibration."""
    from acmix_deploy.fileio import check_collisions, check_destination, check_input_file
    from acmix_deploy.runners.sidecar import sidecar_path

    if options.onnx is not None:
        check_input_file(options.onnx, "--onnx")
    inputs: dict[str, Path | None] = {"--onnx": options.onnx, "--checkpoint": options.checkpoint}
    if options.calib_data is not None and Path(options.calib_data).exists():
        inputs["--calib-data"] = Path(options.calib_data)
    outputs: dict[str, Path | None] = {"--timing-cache": options.timing_cache}
    if options.output is not None:
        check_destination(options.output, "-o")
        check_destination(sidecar_path(options.output), "sidecar")
        outputs.update({"-o": options.output, "sidecar": sidecar_path(options.output)})
    if any(p is not None for p in outputs.values()):
        check_collisions(inputs, outputs)


def _source(options: PipelineOptions, log: Log, note: Log) -> tuple[ExportResult | None, Path, str | None]:
    """(export result or None, fp32 ONNX path, model name): a fresh export with a dynamic batch axis,
    the given file, or the workspace's newest export (exported again with a batch axis if needed)."""
    if options.model is not None:
        from acmix_deploy.export import export_onnx  # the torch export stack, imported when needed

        result = export_onnx(
            options.model, checkpoint=options.checkpoint, img_size=options.img_size, dynamic_batch=True,
            optimize=True, workspace=options.workspace, overrides=dict(options.overrides), log=log,
        )
        note(f"exported {options.model} -> {result.path}")
        return result, Path(result.path), options.model
    from acmix_deploy.workspace import resolve_input_verbose

    path, name = resolve_input_verbose(options.onnx, options.workspace, note)
    if options.onnx is None:  # a batch-1 export would give a batch-1 engine: export it with a batch axis
        from acmix_deploy import workspace as ws
        from acmix_deploy.dynamic_batch import dynamic_reexport

        art = ws.find(path, options.workspace)
        dyn = dynamic_reexport(art, options.max_batch, options.workspace, note) if art is not None else None
        path = dyn or path
    return None, path, name


def _holdout(options: PipelineOptions) -> dict[str, int]:
    return {} if options.holdout is None else {"holdout": options.holdout}


def _fp16(options: PipelineOptions, path: Path, name: str | None, log: Log, note: Log) -> Fp16Result:
    from acmix_deploy.precision.fp16 import convert_fp16

    result = convert_fp16(path, min_cosine=options.min_cosine, model=name, workspace=options.workspace, log=log,
                          **_holdout(options))
    for line in result.lines():
        note(line)
    return result


def _int8(options: PipelineOptions, path: Path, name: str | None, log: Log, note: Log) -> Int8Result:
    from acmix_deploy.precision.int8 import quantize_int8

    result = quantize_int8(
        path, calib_data=options.calib_data, calib_size=options.calib_size, method=options.method,
        split=options.split, min_agreement=options.min_agreement, rest=options.rest, model=name,
        workspace=options.workspace, log=log, **_holdout(options),
    )
    for line in result.lines():
        note(line)
    return result


def _build(options: PipelineOptions, path: Path, name: str | None, flavour: str) -> BuildResult:
    from acmix_deploy.trt.build import build_engine

    return build_engine(
        path, options.output, min_batch=options.min_batch, opt_batch=options.opt_batch,
        max_batch=options.max_batch, trt_workspace=options.trt_workspace, runtime=flavour,
        timing_cache=options.timing_cache, opt_level=options.opt_level,
        compute_capabilities=options.compute_capabilities or None, model=name,
        workspace=options.workspace, progress=options.progress,
    )
