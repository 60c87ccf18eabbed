"""`acmix-deploy optimize`: graph passes over an ONNX file, behind a parity gate, with a report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from acmix_deploy.cli._options import JsonOption, WorkspaceOption, emit_json, stdout_console
from acmix_deploy.cli.app import app
from acmix_deploy.errors import AcmixError


def _parse_shapes(specs: list[str] | None) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs or []:
        name, sep, dims = spec.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.lower().replace(",", "x").split("x"))
        except ValueError:
            raise AcmixError(f"--input-shape expects NAME=DxDx...: got '{spec}'") from None
        if any(d < 1 for d in shapes[name]):
            raise AcmixError(f"--input-shape {name}: every dimension must be >= 1, got '{dims}'")
    return shapes


def _size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _print_passes() -> None:
    from rich.table import Table

    from acmix_deploy.passes import DEFAULT_ORDER, PASSES

    table = Table(title="graph passes (default order)")
    table.add_column("#", justify="right")
    table.add_column("pass")
    table.add_column("what it does")
    for name in DEFAULT_ORDER:
        table.add_row(str(DEFAULT_ORDER.index(name) + 1), name, PASSES[name].summary)
    for name, info in PASSES.items():
        if name not in DEFAULT_ORDER:
            table.add_row("-", name, info.summary)
    stdout_console().print(table)


def _print_report(report) -> None:
    from rich.table import Table

    console = stdout_console()
    ops = Table(title="nodes by op type")
    ops.add_column("op")
    ops.add_column("before", justify="right")
    ops.add_column("after", justify="right")
    for op in sorted(set(report.ops_before) | set(report.ops_after)):
        b, a = report.ops_before.get(op, 0), report.ops_after.get(op, 0)
        ops.add_row(op, str(b), str(a), style=None if a == b else "bold")
    ops.add_row("total", str(report.nodes_before), str(report.nodes_after), style="bold")
    console.print(ops)

    passes = Table(title="passes")
    passes.add_column("pass")
    passes.add_column("nodes", justify="right")
    passes.add_column("time", justify="right")
    for p in report.passes:
        passes.add_row(p.name, f"{p.nodes_before} -> {p.nodes_after}", f"{p.seconds:.2f} s")
    console.print(passes)

    summary = Table(title="summary", show_header=False)
    summary.add_column("what")
    summary.add_column("value")
    summary.add_row("Conv nodes", f"{report.conv_before} -> {report.conv_after}")
    summary.add_row("file size", f"{_size(report.bytes_before)} -> {_size(report.bytes_after)}")
    if report.latency is not None:
        lat = report.latency
        summary.add_row(
            "ORT CPU latency",
            f"{lat.before_ms:.2f} ms -> {lat.after_ms:.2f} ms, ratio {lat.ratio:.3f} "
            f"(median of {lat.runs} alternated pairs, spinning off)",
        )
    summary.add_row("parity inputs", ", ".join(f"{k} {tuple(v)}" for k, v in report.input_shapes.items()))
    console.print(summary)
    for p in report.passes:
        for line in p.parity:
            console.print(f"after {p.name}: {line}", markup=False, highlight=False)
    for line in report.parity:
        console.print(line, markup=False, highlight=False)
    if report.output:
        console.print(f"wrote {report.output}", markup=False, highlight=False)


@app.command("optimize")
def optimize(
    model_path: Annotated[
        Path | None,
        typer.Argument(help="ONNX file; default: the newest ONNX export in the workspace", show_default=False),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="output file; default: <stem>.opt.onnx beside the input")
    ] = None,
    passes: Annotated[
        str | None, typer.Option("--passes", help="comma list of passes to run, in this order")
    ] = None,
    skip: Annotated[str | None, typer.Option("--skip", help="comma list of passes to leave out")] = None,
    list_passes: Annotated[bool, typer.Option("--list-passes", help="list the passes and exit")] = False,
    json_out: JsonOption = False,
    debug: Annotated[bool, typer.Option("--debug", help="run the parity gate after every pass")] = False,
    no_latency: Annotated[bool, typer.Option("--no-latency", help="skip the ORT latency comparison")] = False,
    latency_runs: Annotated[int, typer.Option("--latency-runs", min=10, help="timed runs per model")] = 20,
    input_shape: Annotated[
        list[str] | None,
        typer.Option("--input-shape", help="NAME=2x3x224x224 for inputs with dynamic dims (repeatable)"),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="with no file: take the newest export of this model")
    ] = None,
    workspace: WorkspaceOption = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="ORT threads for timing")] = None,
) -> None:
    """Fold, fuse and clean an ONNX graph; the result must match the input in ONNX Runtime."""
    if list_passes:
        _print_passes()
        return
    from acmix_deploy.passes.pipeline import optimize_file

    if model_path is None:
        from acmix_deploy import workspace as ws

        art = ws.newest(ws.ONNX, model=model, workspace=workspace)
        note = f"input: {art.path} (newest ONNX export of {art.model} in the workspace)"
        print(note, file=sys.stderr if json_out else sys.stdout)
    report = optimize_file(
        model_path,
        output,
        passes=passes,
        skip=skip,
        debug=debug,
        workspace=workspace,
        latency_runs=0 if no_latency else latency_runs,
        input_shapes=_parse_shapes(input_shape),
        model_name=model,
        threads=threads,
    )
    if json_out:
        emit_json(report.to_dict())
    else:
        _print_report(report)
    if report.unchanged:
        print(
            f"{report.input} is already optimized: the passes changed nothing "
            f"({report.nodes_after} nodes, {_size(report.bytes_before)}), so nothing was written",
            file=sys.stderr if json_out else sys.stdout,
        )
