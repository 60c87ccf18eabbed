"""`acmix-deploy inspect [ENGINE]`: the sidecar, and per-layer information where a GPU allows."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from acmix_deploy.cli._options import JsonOption, WorkspaceOption, stdout_console
from acmix_deploy.cli.app import app


@app.command("inspect")
def inspect_cmd(
    engine: Annotated[
        Path | None,
        typer.Argument(metavar="[ENGINE]", help="engine file written by build-trt; default: the newest in the workspace"),
    ] = None,
    layers: Annotated[bool, typer.Option(help="also list the engine's layers (needs a GPU)")] = True,
    runtime: Annotated[str, typer.Option(help="auto (the engine's own) | tensorrt | tensorrt-rtx")] = "auto",
    as_json: JsonOption = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Show how an engine was built (model, precision, batch profile, TensorRT, GPU) and its layers."""
    from rich.table import Table

    from acmix_deploy.trt.inspect import inspect_engine, layer_summary

    if engine is None:
        from acmix_deploy import workspace as ws

        from acmix_deploy.errors import AcmixError

        try:
            art = ws.newest(ws.ENGINE, model=ws.newest_model(workspace).model, workspace=workspace)
        except AcmixError:  # the newest model has no engine yet: the newest engine of any model
            art = ws.newest(ws.ENGINE, workspace=workspace)
        engine = Path(art.path)
        print(f"engine: {engine} (the newest engine of {art.model}, the newest model in the workspace)",
              file=sys.stderr if as_json else sys.stdout)
    report = inspect_engine(engine, runtime=runtime, layers=layers and not as_json)
    side = report.sidecar
    if as_json:
        print(side.to_json())
        return
    console = stdout_console()
    table = Table(title=str(engine), show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value")
    lo, opt, hi = side.batch_range
    rows = [
        ("model", side.model),
        ("precision", side.precision),
        ("inputs", "; ".join(f"{t.name} {t.dtype} {t.shape}" for t in side.inputs)),
        ("outputs", "; ".join(f"{t.name} {t.dtype} {t.shape}" for t in side.outputs)),
        ("batch", f"{lo}..{hi} (opt {opt})"),
        ("TensorRT", f"{side.trt_flavour} {side.trt_version}"),
        ("built on GPU", f"{side.gpu_name} ({side.gpu_compute_capability})" if side.gpu_name else "-"),
        ("target compute capability", ", ".join(side.target_compute_capabilities or []) or
         ("default (8.0 and later)" if side.trt_flavour == "tensorrt-rtx" else "the build GPU's")),
        ("built", f"{side.created} in {side.build_seconds:.1f} s by acmix-deploy {side.toolkit_version}"),
        ("ONNX", f"{side.onnx_path} (sha256 {side.onnx_sha256[:12]}...)"),
        ("options", ", ".join(f"{k}={v}" for k, v in side.build_options.items() if v is not None)),
    ]
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)
    if report.note:
        console.print(report.note, highlight=False)
    elif report.layers is not None:
        lt = Table(title=f"{len(report.layers)} layers", title_justify="left")
        for col in ("#", "name", "type", "format / tactic"):
            lt.add_column(col)
        for i, layer in enumerate(report.layers):
            lt.add_row(str(i), *layer_summary(layer))
        console.print(lt)
