"""`acmix-deploy quantize-int8`: fp32 ONNX -> verified int8 Q/DQ ONNX for TensorRT."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acmix_deploy.cli._options import WorkspaceOption, stdout_console, warn
from acmix_deploy.cli.app import app
from acmix_deploy.precision.int8_options import DEFAULT_METHOD, DEFAULT_SPLIT, Method, Rest, Split


@app.command("quantize-int8")
def quantize_int8_cmd(
    onnx_in: Annotated[
        Path | None, typer.Argument(metavar="[IN.onnx]", help="fp32 ONNX; default: the newest export in the workspace")
    ] = None,
    calib_data: Annotated[
        str, typer.Option(help="image folder (class subfolders), uint8 NHWC RGB .npy, or random")
    ] = ...,
    calib_size: Annotated[int, typer.Option(help="calibration inputs")] = 256,
    method: Annotated[Method, typer.Option(help="activation range calibration")] = Method(DEFAULT_METHOD),
    min_agreement: Annotated[
        float, typer.Option(help="fail (nothing written) below this top-1 agreement with fp32 on held-out images")
    ] = 0.97,
    holdout: Annotated[int, typer.Option(help="held-out inputs used to verify (never calibration inputs)")] = 128,
    split: Annotated[Split, typer.Option(help="which Conv/MatMul/Gemm are quantized")] = Split(DEFAULT_SPLIT),
    rest: Annotated[Rest, typer.Option(help="precision of what is not quantized (attention math, dep_conv ...)")] = Rest.fp16,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="where to write the int8 ONNX")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """int8 Q/DQ for stage I, fc, convs and linears; attention math, dep_conv, first conv and logits stay float."""
    from acmix_deploy.precision.int8 import quantize_int8
    from acmix_deploy.workspace import resolve_input_verbose

    from acmix_deploy.progress import Phases

    console = stdout_console()
    path, model = resolve_input_verbose(onnx_in, workspace, console.print)
    with Phases(console) as phase:
        result = quantize_int8(
            path, output, calib_data=calib_data, calib_size=calib_size, method=method.value,
            min_agreement=min_agreement, split=split.value, holdout=holdout, rest=rest.value, model=model,
            workspace=workspace, log=phase,
        )
    for line in result.lines():
        console.print(line, highlight=False)
    if not result.report.meaningful:
        warn("calibrated and verified on random noise: these numbers say nothing about accuracy on images; "
             "the --min-agreement gate was not applied")
    console.print(f"wrote {result.path}")
