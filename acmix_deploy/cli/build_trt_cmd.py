"""`acmix-deploy build-trt`: (export ->) (fp16 | int8 ->) TensorRT engine + sidecar (acmix_deploy.pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acmix_deploy.cli._options import ArtifactsAlias, WorkspaceOption, split_list, stdout_console, warn
from acmix_deploy.cli.app import app
from acmix_deploy.errors import AcmixError
from acmix_deploy.precision.int8_options import DEFAULT_METHOD, DEFAULT_SPLIT, Method, Rest, Split


@app.command("build-trt")
def build_trt_cmd(
    onnx_in: Annotated[Path | None, typer.Option("--onnx", help="ONNX to build from")] = None,
    model: Annotated[str | None, typer.Option("--model", help="export this registry model first")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="weights for --model")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="convert to fp16 (verified) first")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="quantize to int8 Q/DQ (verified) first")] = False,
    calib_data: Annotated[
        str | None, typer.Option(help="--int8 (required): image folder, uint8 NHWC .npy, or random")
    ] = None,
    calib_size: Annotated[int, typer.Option(help="--int8: calibration inputs")] = 256,
    method: Annotated[Method, typer.Option(help="--int8: range calibration")] = Method(DEFAULT_METHOD),
    split: Annotated[Split, typer.Option(help="--int8: which Conv/MatMul/Gemm are quantized")] = Split(DEFAULT_SPLIT),
    rest: Annotated[Rest, typer.Option(help="--int8: precision of what is not quantized")] = Rest.fp16,
    min_agreement: Annotated[float, typer.Option(help="--int8: top-1 agreement gate (real images)")] = 0.97,
    min_cosine: Annotated[float, typer.Option(help="--fp16: logits cosine gate")] = 0.999,
    min_batch: Annotated[int, typer.Option(help="smallest batch the engine takes")] = 1,
    opt_batch: Annotated[int, typer.Option(help="batch TensorRT tunes for")] = 8,
    max_batch: Annotated[int, typer.Option(help="largest batch the engine takes")] = 32,
    trt_workspace: Annotated[
        str, typer.Option("--trt-workspace", help="TensorRT scratch memory limit, e.g. 4GiB or 512MiB")
    ] = "4GiB",
    runtime: Annotated[str, typer.Option(help="auto | tensorrt | tensorrt-rtx")] = "auto",
    timing_cache: Annotated[Path | None, typer.Option(help="tensorrt only: timing cache file (read and updated)")] = None,
    opt_level: Annotated[int | None, typer.Option(help="tensorrt only: builder optimisation level 0-5")] = None,
    compute_capability: Annotated[
        list[str] | None,
        typer.Option(help="tensorrt-rtx only: target GPU, e.g. 8.6 (repeat or comma-separate; 'current')"),
    ] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="engine path (sidecar: <engine>.json)")] = None,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsAlias = None,
) -> None:
    """Build a strongly typed TensorRT engine for a batch range; writes the engine and its JSON sidecar."""
    from acmix_deploy.pipeline import PipelineOptions, build_pipeline
    from acmix_deploy.progress import Phases

    if fp16 and int8:
        raise AcmixError("give --fp16 or --int8, not both (--int8 --rest fp16 already runs the float parts in fp16)")
    if workspace is not None and artifacts is not None and workspace != artifacts:
        raise AcmixError("give --workspace (the artifact folder) only; --artifacts is its old name")
    options = PipelineOptions(
        model=model, onnx=onnx_in, checkpoint=checkpoint, precision="fp16" if fp16 else "int8" if int8 else "fp32",
        min_cosine=min_cosine, calib_data=calib_data, calib_size=calib_size, method=method.value,
        split=split.value, rest=rest.value, min_agreement=min_agreement, min_batch=min_batch,
        opt_batch=opt_batch, max_batch=max_batch, trt_workspace=trt_workspace, runtime=runtime,
        timing_cache=timing_cache, opt_level=opt_level, compute_capabilities=split_list(compute_capability),
        output=output, workspace=workspace or artifacts,
    )
    console = stdout_console()
    with Phases(console) as phase:
        result = build_pipeline(options, log=phase, note=phase.note)
    _render(result, console)


def _render(result, console) -> None:
    """Notes, warnings (stderr) and the one summary line of the built engine."""
    engine = result.engine
    for note in engine.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    for warning in result.warnings:
        warn(warning)
    side = engine.sidecar
    lo, opt, hi = side.batch_range
    target = (
        f"targets compute capability {', '.join(side.target_compute_capabilities)}"
        if side.target_compute_capabilities
        else (f"built on {side.gpu_name} ({side.gpu_compute_capability})" if side.gpu_name else "default targets (8.0+)")
    )
    size = engine.path.stat().st_size / 2**20
    console.print(
        f"built {side.precision} engine for batch {lo}..{hi} (opt {opt}) in {engine.build_seconds:.1f} s, "
        f"{size:.1f} MiB, {side.trt_flavour} {side.trt_version}, {target}",
        highlight=False,
    )
    console.print(f"wrote {engine.path} and {engine.sidecar_path.name}", highlight=False, markup=False)
