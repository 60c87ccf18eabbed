"""`acmix-deploy profile`: time per op type and per ACmix block (stage I / attention / conv / rest)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acmix_deploy.cli._options import (
    ImgSizeOption,
    JsonOption,
    OutputJsonOption,
    ShiftOption,
    ThreadsOption,
    WorkspaceOption,
    check_outputs,
    emit_json,
    split_list,
    stdout_console,
)
from acmix_deploy.cli.app import app
from acmix_deploy.errors import AcmixError


@app.command("profile")
def profile_command(
    model: Annotated[str | None, typer.Option("--model", help="Model name from the registry.")] = None,
    onnx: Annotated[Path | None, typer.Option("--onnx", help="ONNX file to profile.")] = None,
    engine: Annotated[Path | None, typer.Option("--engine", help="TensorRT engine file to profile.")] = None,
    img_size: ImgSizeOption = None,
    batch: Annotated[int, typer.Option("--batch", help="Batch size.")] = 1,
    warmup: Annotated[int, typer.Option("--warmup", help="Runs before profiling starts.")] = 5,
    iterations: Annotated[int, typer.Option("--iterations", help="Profiled runs (times are per run).")] = 20,
    threads: ThreadsOption = None,
    backend: Annotated[
        list[str] | None, typer.Option("--backend", "-b", help="onnxruntime and/or tensorrt (default: both).")
    ] = None,
    shift: ShiftOption = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG bar chart.")] = None,
    as_json: JsonOption = False,
    output: OutputJsonOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Where the time goes: per op type and per ACmix block, split into stage I, attention, conv path, rest."""
    from acmix_deploy.bench.profile import profile, render_profile, write_profile_json, write_profile_plot

    check_outputs({"--onnx": onnx, "--engine": engine}, output=output, plot=plot)
    from acmix_deploy import validate

    validate.positive_int(batch, "--batch")
    validate.positive_int(iterations, "--iterations")
    validate.img_size(img_size, batch=batch)
    report = profile(
        model=model,
        onnx=onnx,
        engine=engine,
        img_size=img_size,
        batch=batch,
        warmup=warmup,
        iterations=iterations,
        threads=threads,
        backends=split_list(backend) or None,
        shift=shift,
        workspace=workspace,
    )
    failed = not any(r.status == "ok" for r in report.results)
    out = stdout_console(stderr=as_json)  # with --json, stdout holds the JSON document only
    if not as_json or failed:
        render_profile(report, out)
    if failed:  # a failed run writes nothing
        raise AcmixError("no backend produced a profile (see the reasons above); nothing written")
    if as_json:
        emit_json(report.to_dict())
    if output:
        out.print(f"wrote {write_profile_json(report, output)}")
    if plot:
        out.print(f"wrote {write_profile_plot(report, plot)}")
