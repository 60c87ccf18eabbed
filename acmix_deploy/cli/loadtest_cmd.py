"""`acmix-deploy loadtest`: throughput and latency of a Triton server under concurrent requests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acmix_deploy.cli._options import JsonOption, OutputJsonOption, check_outputs, emit_json, int_list, stdout_console
from acmix_deploy.cli.app import app


@app.command("loadtest")
def loadtest_command(
    url: Annotated[str, typer.Option("--url", help="Server HTTP endpoint, e.g. http://127.0.0.1:8000")],
    served_model: Annotated[str, typer.Option("--served-model", help="Model name on the server.")],
    concurrency: Annotated[list[str] | None, typer.Option("--concurrency", help="e.g. 1,2,4,8,16")] = None,
    duration: Annotated[float, typer.Option(help="Measurement window per level (s).")] = 5.0,
    warmup: Annotated[float, typer.Option(help="Warm-up before each window (s).")] = 1.0,
    image: Annotated[Path | None, typer.Option(help="Encoded image sent to BYTES inputs (ensembles).")] = None,
    baseline_url: Annotated[str | None, typer.Option("--baseline-url", help="A second server, measured level by level in turn.")] = None,
    as_json: JsonOption = False,
    output: OutputJsonOption = None,
    csv_out: Annotated[Path | None, typer.Option("--csv")] = None,
    plot_out: Annotated[Path | None, typer.Option("--plot", help="Latency-throughput PNG.")] = None,
) -> None:
    """Per concurrency: infer/s, client p50 / p90 / p99 latency, errors, and the server's batch sizes."""
    from rich.table import Table

    from acmix_deploy.serve import loadtest as lt

    check_outputs(output=output, csv=csv_out, plot=plot_out)
    levels = int_list(concurrency or ["1,2,4,8,16"], "--concurrency")
    report = lt.loadtest_in_process(url=url, model=served_model, concurrencies=levels, duration_s=duration,
                                    warmup_s=warmup, image=str(image) if image else None, baseline_url=baseline_url)
    table = Table(title=f"{served_model}: {duration:g} s windows after {warmup:g} s warm-up")
    for col in ("server", "concurrency", "infer/s", "p50 ms", "p90 ms", "p99 ms", "errors", "mean batch"):
        table.add_column(col, justify="right")
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for r in report["levels"]:
        table.add_row(r["server"], str(r["concurrency"]), fmt(r["throughput"]), fmt(r["p50_ms"]), fmt(r["p90_ms"]),
                      fmt(r["p99_ms"]), str(r["errors"]), "-" if r["mean_batch"] is None else f"{r['mean_batch']:.2f}")
    console = stdout_console(stderr=as_json)  # with --json, stdout holds the JSON document only
    if as_json:
        emit_json(report)
    else:
        console.print(table)
    for r in report["levels"]:
        for sample in r["error_samples"]:
            console.print(f"[red]error[/] (c={r['concurrency']}): {sample}")
    if output:
        lt.write_json(report, output)
    if csv_out:
        lt.write_csv(report, csv_out)
    if plot_out:
        lt.plot(report, plot_out)
    for path in (output, csv_out, plot_out):
        if path:
            console.print(f"wrote {path}")
