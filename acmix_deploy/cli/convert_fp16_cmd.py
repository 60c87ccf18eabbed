"""`acmix-deploy convert-fp16`: fp32 ONNX -> verified fp16 ONNX (sensitive ops kept fp32)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acmix_deploy.cli._options import WorkspaceOption, stdout_console
from acmix_deploy.cli.app import app


@app.command("convert-fp16")
def convert_fp16_cmd(
    onnx_in: Annotated[
        Path | None, typer.Argument(metavar="[IN.onnx]", help="fp32 ONNX; default: the newest export in the workspace")
    ] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="where to write the fp16 ONNX")] = None,
    min_cosine: Annotated[float, typer.Option(help="fail (nothing written) below this logits cosine vs fp32")] = 0.999,
    data: Annotated[
        str, typer.Option(help="inputs for the range check and verification: image folder, uint8 NHWC .npy, or random")
    ] = "random",
    samples: Annotated[int, typer.Option(help="inputs used to measure fp32 activation ranges")] = 16,
    holdout: Annotated[int, typer.Option(help="held-out inputs used to verify")] = 32,
    margin: Annotated[float, typer.Option(help="keep fp32 where |activation| > 65504 / margin")] = 4.0,
    workspace: WorkspaceOption = None,
) -> None:
    """Convert to fp16 for strongly typed TensorRT; Softmax, reductions, LayerNorm and logits stay fp32."""
    from acmix_deploy.precision.fp16 import convert_fp16
    from acmix_deploy.workspace import resolve_input_verbose

    from acmix_deploy.progress import Phases

    console = stdout_console()
    path, model = resolve_input_verbose(onnx_in, workspace, console.print)
    with Phases(console) as phase:
        result = convert_fp16(
            path, output, min_cosine=min_cosine, data=data, samples=samples, holdout=holdout, margin=margin,
            model=model, workspace=workspace, log=phase,
        )
    for line in result.lines():
        console.print(line, highlight=False)
    console.print(f"wrote {result.path}")
