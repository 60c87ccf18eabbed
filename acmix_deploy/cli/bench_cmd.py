"""`acmix-deploy bench`: latency / throughput / memory per backend and batch, with a baseline ratio."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acmix_deploy.cli._options import (
    ImgSizeOption,
    ShiftOption,
    ThreadsOption,
    JsonOption,
    OutputJsonOption,
    WorkspaceOption,
    check_outputs,
    emit_json,
    int_list,
    split_list,
    stdout_console,
)
from acmix_deploy import validate
from acmix_deploy.cli.app import app
from acmix_deploy.errors import AcmixError


@app.command("bench")
def bench_command(
    model: Annotated[str | None, typer.Option("--model", help="Model name from the registry.")] = None,
    onnx: Annotated[Path | None, typer.Option("--onnx", help="ONNX file to bench.")] = None,
    engine: Annotated[Path | None, typer.Option("--engine", help="TensorRT engine file to bench.")] = None,
    backend: Annotated[
        list[str] | None,
        typer.Option(
            "--backend",
            "-b",
            help="torch-eager (torch), torch-deploy, torch-compile, onnxruntime (ort), onnxruntime-cuda, "
            "onnxruntime-trt, tensorrt (trt). Comma-separated and/or repeated.",
        ),
    ] = None,
    batch: Annotated[list[str] | None, typer.Option("--batch", help="Batch sizes, e.g. 1,8,32.")] = None,
    img_size: ImgSizeOption = None,
    warmup_s: Annotated[float, typer.Option("--warmup-s", help="Warm-up seconds per backend and batch.")] = 2.0,
    warmup_iterations: Annotated[
        int | None, typer.Option("--warmup-iterations", help="Warm-up by iterations instead of seconds.")
    ] = None,
    duration_s: Annotated[
        float | None,
        typer.Option(
            "--duration-s",
            help="Timed seconds per backend and batch (default 10, or ACMIX_DEPLOY_BENCH_DURATION_S).",
        ),
    ] = None,
    iterations: Annotated[int | None, typer.Option("--iterations", help="Timed iterations instead of seconds.")] = None,
    threads: ThreadsOption = None,
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="Baseline model name (or .onnx / engine file), timed interleaved.")
    ] = None,
    shift: ShiftOption = None,
    cuda_graph: Annotated[bool, typer.Option("--cuda-graph", help="Replay CUDA graphs where the backend can.")] = False,
    include_transfers: Annotated[
        bool, typer.Option("--include-transfers", help="Time host<->device copies too (GPU backends).")
    ] = False,
    memory: Annotated[bool, typer.Option("--memory/--no-memory", help="Measure peak memory per backend.")] = True,
    device: Annotated[str, typer.Option("--device", help="Where torch backends run: auto, cpu, cuda.")] = "auto",
    as_json: JsonOption = False,
    output: OutputJsonOption = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write results as CSV.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write latency/throughput vs batch as PNG.")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Time backends x batch sizes: mean/median/p90/p95/p99/min/max, img/s, CV, peak memory, ratio to --baseline."""
    from rich.console import Console

    from acmix_deploy.bench import report
    from acmix_deploy.bench.run import bench

    check_outputs({"--onnx": onnx, "--engine": engine, "--baseline": baseline}, output=output, csv=csv_out, plot=plot)
    batches = int_list(batch, "--batch") or [1]
    from acmix_deploy.progress import Phases

    validate.img_size(img_size, batch=max(batches))
    phases = Phases(Console(stderr=True, soft_wrap=True))
    with phases:  # a spinner with the current phase on a terminal, one line per phase in a log
        result = bench(
            model=model, onnx=onnx, engine=engine, backends=split_list(backend) or None, batches=batches,
            img_size=img_size, warmup_s=warmup_s, warmup_iterations=warmup_iterations, duration_s=duration_s,
            iterations=iterations, threads=threads, baseline=baseline, shift=shift, cuda_graph=cuda_graph,
            include_transfers=include_transfers, memory=memory, device=device, workspace=workspace,
            progress=phases,
        )
    failed = not any(r.ok for r in result.rows)
    out = stdout_console(stderr=as_json)  # with --json, stdout holds the JSON document only
    if not as_json or failed:
        report.render_table(result, out)
    if failed:  # a failed run writes no report (an old one stays as it was)
        raise AcmixError("no backend produced a measurement (see the reasons above); nothing written")
    if as_json:
        emit_json(report.to_json_dict(result))
    if output:
        out.print(f"wrote {report.write_json(result, output)}", highlight=False)
    if csv_out:
        out.print(f"wrote {report.write_csv(result, csv_out)}")
    if plot:
        out.print(f"wrote {report.write_plot(result, plot)}")
