"""`acmix-deploy build-trt`: (export ->) (fp16 | int8 ->) TensorRT engine + sidecar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from acmix_deploy.cli._options import split_list
from acmix_deploy.cli.app import app
from acmix_deploy.errors import AcmixError
from acmix_deploy.precision.int8_options import DEFAULT_METHOD, DEFAULT_SPLIT, Method, Rest, Split

console = Console(soft_wrap=True)


def _export(model: str, checkpoint: Optional[Path], artifacts: Optional[Path]) -> Path:
    from acmix_deploy.export import export_onnx  # part of the package; imported lazily (torch export stack)
    from acmix_deploy.progress import Phases

    with Phases(console) as phase:
        result = export_onnx(model, checkpoint=checkpoint, dynamic_batch=True, optimize=True, workspace=artifacts,
                             log=phase)
    console.print(f"exported {model} -> {result.path}")
    return Path(result.path)


def _check_before_work(
    onnx_in: Optional[Path], checkpoint: Optional[Path], calib_data: Optional[str], timing_cache: Optional[Path],
    output: Optional[Path], min_batch: int, opt_batch: int, max_batch: int,
) -> None:
    """Batch range, inputs and every output (engine, sidecar, timing cache), before export or calibration."""
    from acmix_deploy.fileio import check_collisions, check_destination, check_input_file
    from acmix_deploy.trt.sidecar import sidecar_path

    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise AcmixError(f"batches must satisfy 1 <= --min-batch <= --opt-batch <= --max-batch, "
                         f"got {min_batch}, {opt_batch}, {max_batch}")
    if onnx_in is not None:
        check_input_file(onnx_in, "--onnx")
    inputs = {"--onnx": onnx_in, "--checkpoint": checkpoint}
    if calib_data is not None and Path(calib_data).exists():
        inputs["--calib-data"] = Path(calib_data)
    if output is not None:
        check_destination(output, "-o")
        check_destination(sidecar_path(output), "sidecar")
        check_collisions(inputs, {"-o": output, "sidecar": sidecar_path(output), "--timing-cache": timing_cache})
    elif timing_cache is not None:
        check_collisions(inputs, {"--timing-cache": timing_cache})


@app.command("build-trt")
def build_trt_cmd(
    onnx_in: Annotated[Optional[Path], typer.Option("--onnx", help="ONNX to build from")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="export this registry model first")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="weights for --model")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="convert to fp16 (verified) first")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="quantize to int8 Q/DQ (verified) first")] = False,
    calib_data: Annotated[
        Optional[str], typer.Option(help="--int8 (required): image folder, uint8 NHWC .npy, or random")
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
    workspace: Annotated[str, typer.Option(help="TensorRT scratch memory limit")] = "4GiB",
    runtime: Annotated[str, typer.Option(help="auto | tensorrt | tensorrt-rtx")] = "auto",
    timing_cache: Annotated[Optional[Path], typer.Option(help="tensorrt only: timing cache file (read and updated)")] = None,
    opt_level: Annotated[Optional[int], typer.Option(help="tensorrt only: builder optimisation level 0-5")] = None,
    compute_capability: Annotated[
        Optional[list[str]],
        typer.Option(help="tensorrt-rtx only: target GPU, e.g. 8.6 (repeat or comma-separate; 'current')"),
    ] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="engine path (sidecar: <engine>.json)")] = None,
    artifacts: Annotated[Optional[Path], typer.Option(help="artifact workspace (default ./artifacts)")] = None,
) -> None:
    """Build a strongly typed TensorRT engine for a batch range; writes the engine and its JSON sidecar."""
    from acmix_deploy.workspace import resolve_input_verbose
    from acmix_deploy.trt import load_trt
    from acmix_deploy.trt.build import build_engine

    if onnx_in is not None and model is not None:
        raise AcmixError("give --onnx or --model, not both")
    if fp16 and int8:
        raise AcmixError("give --fp16 or --int8, not both (--int8 --rest fp16 already runs the float parts in fp16)")
    if int8 and calib_data is None:
        raise AcmixError("--int8 needs --calib-data DIR|FILE.npy|random")
    _check_before_work(onnx_in, checkpoint, calib_data, timing_cache, output, min_batch, opt_batch, max_batch)
    _, flavour, version = load_trt(runtime)  # fail fast, before exporting or calibrating
    console.print(f"TensorRT: {flavour} {version}")
    name = model
    if model is not None:
        path = _export(model, checkpoint, artifacts)
    else:
        path, name = resolve_input_verbose(onnx_in, artifacts, console.print)
        if onnx_in is None:  # a batch-1 export would give a batch-1 engine: export it with a batch axis
            from acmix_deploy import workspace as ws
            from acmix_deploy.dynamic_batch import dynamic_reexport

            art = ws.find(path, artifacts)
            dyn = dynamic_reexport(art, max_batch, artifacts, console.print) if art is not None else None
            path = dyn or path
    if fp16:
        from acmix_deploy.precision.fp16 import convert_fp16

        from acmix_deploy.progress import Phases

        with Phases(console) as phase:
            res = convert_fp16(path, min_cosine=min_cosine, model=name, workspace=artifacts, log=phase)
        for line in res.lines():
            console.print(line, highlight=False)
        path = res.path
    elif int8:
        from acmix_deploy.precision.int8 import quantize_int8

        from acmix_deploy.progress import Phases

        with Phases(console) as phase:
            res = quantize_int8(
                path, calib_data=calib_data, calib_size=calib_size, method=method.value, split=split.value,
                min_agreement=min_agreement, rest=rest.value, model=name, workspace=artifacts, log=phase,
            )
        for line in res.lines():
            console.print(line, highlight=False)
        if not res.report.meaningful:
            console.print("[yellow]int8 calibrated on random noise: accuracy numbers are not meaningful[/yellow]")
        path = res.path
    ccs = split_list(compute_capability)
    result = build_engine(
        path, output, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, workspace=workspace,
        runtime=flavour, timing_cache=timing_cache, opt_level=opt_level, compute_capabilities=ccs or None,
        model=name, artifact_workspace=artifacts,
    )
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    for warning in result.warnings:
        console.print(f"[yellow]warning: {warning}[/yellow]", highlight=False)
    side = result.sidecar
    lo, opt, hi = side.batch_range
    target = (
        f"targets compute capability {', '.join(side.target_compute_capabilities)}"
        if side.target_compute_capabilities
        else (f"built on {side.gpu_name} ({side.gpu_compute_capability})" if side.gpu_name else "default targets (8.0+)")
    )
    size = result.path.stat().st_size / 2**20
    console.print(
        f"built {side.precision} engine for batch {lo}..{hi} (opt {opt}) in {result.build_seconds:.1f} s, "
        f"{size:.1f} MiB, {side.trt_flavour} {side.trt_version}, {target}",
        highlight=False,
    )
    console.print(f"wrote {result.path} and {result.sidecar_path.name}", highlight=False)
