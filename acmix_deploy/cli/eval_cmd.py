"""`acmix-deploy eval`: top-1 / top-5 of checkpoints, ONNX files and engines on the same images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from acmix_deploy.cli._options import JsonOption, OutputJsonOption, emit_json, stdout_console
from acmix_deploy.cli.app import app
from acmix_deploy.errors import AcmixError

_PRE = "Preprocessing (only for artifacts whose metadata lacks it)"


def _floats(text: str | None, name: str) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise AcmixError(f"{name} takes three comma-separated numbers, got {text!r}") from None
    if len(values) != 3:
        raise AcmixError(f"{name} takes three comma-separated numbers, got {text!r}")
    return values


@app.command("eval")
def eval_command(
    artifacts: Annotated[list[Path], typer.Argument(help="Checkpoints (.pth), ONNX files, engines; the first is the reference.")],
    data: Annotated[Path, typer.Option("--data", help="ImageFolder root: DIR/val/<class>/... or DIR/<class>/...")],
    batch_size: Annotated[int, typer.Option("--batch-size", "-b")] = 64,
    on_corrupt: Annotated[str, typer.Option("--on-corrupt", help="skip: leave unreadable images out and list them; stop: fail on the first.")] = "skip",
    workers: Annotated[int, typer.Option(help="Image decoding worker processes.")] = 0,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name for checkpoints that do not record it (e.g. official weights).")] = None,
    device: Annotated[str | None, typer.Option(help="Device for checkpoints: cpu or cuda \\[default: cuda if available].")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for PyTorch and ONNX Runtime \\[default: all cores].")] = None,
    img_size: Annotated[int | None, typer.Option("--img-size", rich_help_panel=_PRE)] = None,
    mean: Annotated[str | None, typer.Option(help="e.g. 0.485,0.456,0.406", rich_help_panel=_PRE)] = None,
    std: Annotated[str | None, typer.Option(help="e.g. 0.229,0.224,0.225", rich_help_panel=_PRE)] = None,
    crop_ratio: Annotated[float | None, typer.Option("--crop-ratio", rich_help_panel=_PRE)] = None,
    interpolation: Annotated[str | None, typer.Option(help="bilinear, bicubic, nearest or lanczos", rich_help_panel=_PRE)] = None,
    as_json: JsonOption = False,
    output: OutputJsonOption = None,
) -> None:
    """Accuracy of each artifact, its delta to the first and how often it picks the same class."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from acmix_deploy.evaluate import evaluate
    from acmix_deploy.fileio import check_collisions, check_destination, write_bytes_atomic

    from acmix_deploy import validate

    validate.img_size(img_size, batch=batch_size)
    if output is not None:
        check_destination(output, "-o")
        check_collisions([(f"artifact {i + 1}", a) for i, a in enumerate(artifacts)], {"-o": output})

    fallback = {
        "input_size": img_size, "mean": _floats(mean, "--mean"), "std": _floats(std, "--std"),
        "crop_ratio": crop_ratio, "interpolation": interpolation,
    }
    console = stdout_console(stderr=as_json)  # tables at 200 columns when piped; with --json on stderr
    with Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("eval", total=None)
        report = evaluate(
            [str(a) for a in artifacts], data, batch_size=batch_size, on_corrupt=on_corrupt, workers=workers,
            fallback=fallback, model_name=model, device=device, threads=threads,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    failed = not any(r.available for r in report.results)
    if not as_json or failed:
        print_report(report, console)
    if failed:
        raise AcmixError("nothing was evaluated: no artifact could run here (see the table)")
    if as_json:
        emit_json(report.to_dict())
    if output is not None:
        write_bytes_atomic(output, json.dumps(report.to_dict(), indent=2).encode())
        console.print(f"wrote {output}", highlight=False, markup=False)


def print_report(report, console) -> None:
    from rich.table import Table

    ref = report.reference
    n = report.evaluated
    table = Table(
        title=f"{report.root}: {n} images, {len(report.classes)} classes",
        caption="Δ top-1: points (images) vs the reference; agree: same top-1 class as the reference",
    )
    table.add_column("artifact", overflow="fold")
    table.add_column("kind")
    for col in ("top-1", "top-5", "Δ top-1", "agree"):
        table.add_column(col, justify="right")
    for r in report.results:
        if not r.available:
            table.add_row(r.path, r.kind, r.error, "", "", "")
            continue
        top1, top5 = report.top1(r), report.top5(r)
        if r is ref:
            delta, agree = "reference", "reference"
        else:
            d_img = r.correct1 - ref.correct1
            delta = f"{top1 - report.top1(ref):+.2f} ({d_img:+d})"
            a = report.agreement(r)
            agree = f"{100.0 * a / max(1, n):.2f}% ({n - a} diff)"
        table.add_row(r.path, r.kind, f"{top1:.2f}%", f"{top5:.2f}%", delta, agree)
    console.print(table)
    if report.skipped:
        shown = ", ".join(f for f, _ in report.skipped[:5])
        console.print(
            f"[yellow]skipped {len(report.skipped)} corrupt image(s)[/] of {report.total} "
            f"(not counted for any artifact): {shown}{' ...' if len(report.skipped) > 5 else ''}"
        )
    else:
        console.print(f"all {report.total} images read")
    for r in report.results:
        if r.available:
            console.print(f"  {Path(r.path).name}: {r.pre.describe()}" + (f" ({r.note})" if r.note else ""))
