"""`acmix-deploy export`: registered model (+ checkpoint) -> verified ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from acmix_deploy.cli._options import WorkspaceOption, stdout_console
from acmix_deploy.cli.app import app
from acmix_deploy.errors import AcmixError


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; values parse as JSON when they can (numbers, lists), else stay strings."""
    import json

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AcmixError(f"--override takes KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


@app.command("export")
def export_command(
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="registered model name (see list-models); optional with a checkpoint written by acmix-deploy"),
    ] = None,
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="weights to load (safe loading)")] = None,
    img_size: Annotated[int | None, typer.Option("--img-size", help="input side in px (default: the model card's)")] = None,
    batch: Annotated[int, typer.Option("--batch", help="fixed batch size")] = 1,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="symbolic batch dimension")] = False,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset")] = 18,
    shift: Annotated[str, typer.Option("--shift", help="conv-path shift: group | fixed | tensor")] = "group",
    features: Annotated[bool, typer.Option("--features", help="output the four stage maps stage1..stage4")] = False,
    optimize: Annotated[bool, typer.Option("--optimize/--no-optimize", help="run the graph passes (acmix-deploy optimize)")] = True,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="check against PyTorch in ONNX Runtime")] = True,
    workspace: WorkspaceOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="output file (default: in the workspace)")] = None,
    override: Annotated[
        list[str] | None, typer.Option("--override", help="model override KEY=VALUE (width, k_att, window, ...)")
    ] = None,
    conv_form: Annotated[
        str | None, typer.Option("--conv-form", help="ResNet-ACmix conv path: split | grouped | dense")
    ] = None,
) -> None:
    """Export a model to ONNX (deploy form), verify it against the PyTorch reference, record it."""
    from acmix_deploy.export import export_onnx
    from acmix_deploy.progress import Phases

    console = stdout_console()
    deploy_options = {"conv_form": conv_form} if conv_form else None
    with Phases(console) as phase:  # a spinner with the phase on a terminal, one line per phase in a log
        result = export_onnx(
            model, checkpoint=checkpoint, img_size=img_size, batch=batch, dynamic_batch=dynamic_batch,
            opset=opset, shift=shift, features=features, output=output, verify=verify, optimize=optimize,
            workspace=workspace, overrides=_parse_overrides(override or []), deploy_options=deploy_options,
            log=phase,
        )
    where = " (recorded in the workspace)" if result.recorded else ""
    console.print(
        f"wrote {result.path} ({result.bytes / 1e6:.1f} MB, {result.seconds:.1f} s){where}",
        highlight=False, soft_wrap=True,
    )
    if not verify:
        console.print("not verified (--no-verify)", highlight=False)
