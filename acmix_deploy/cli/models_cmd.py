"""Model commands: list-models, info, doctor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from acmix_deploy.cli._options import JsonOption, emit_json, stdout_console, warn
from acmix_deploy.cli.app import app
from acmix_deploy.cli import gpu_check_output as gpu_cli


@app.command("list-models")
def list_models_cmd(
    json_out: JsonOption = False,
) -> None:
    """List the registered models: parameters and MACs as counted here and as the paper gives them,
    input size and paper top-1 (card data only: builds no model, imports no torch)."""
    from acmix_deploy.registry import get_card, list_models

    rows = []
    for name in list_models():
        card = get_card(name)
        rows.append(
            {
                "name": name,
                "params_m": card.counted.get("params_m"),
                "gmacs": card.counted.get("gmacs"),
                "paper_params_m": card.paper.get("params_m"),
                "paper_gmacs": card.paper.get("gmacs"),
                "input_size": card.input_size,
                "paper_top1": card.paper.get("top1"),
                "description": card.description,
            }
        )
    if json_out:
        emit_json(rows)
        return
    table = Table(title="acmix-deploy model zoo (1000 classes; counted: this toolkit's count, paper: as published)")
    columns = {"model": "name", "params (M)\ncounted": "params_m", "params (M)\npaper": "paper_params_m",
               "GMACs\ncounted": "gmacs", "GMACs\npaper": "paper_gmacs", "input": "input_size", "paper\ntop-1": "paper_top1"}
    for col in columns:
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=col == "model")
    for r in rows:
        table.add_row(*(_cell(r[key], counted=key in ("params_m", "gmacs")) for key in columns.values()))
    stdout_console().print(table)


def _cell(value: object, counted: bool = False) -> str:
    """A table cell: counted numbers with two decimals, the rest as the card gives them; "-" for none."""
    if value is None:
        return "-"
    return f"{value:.2f}" if counted else str(value)


@app.command("info")
def info_cmd(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Registered model name.")] = None,
    img_size: Annotated[int | None, typer.Option("--img-size", help="Input size (default: the card's).")] = None,
    checkpoint: Annotated[list[Path] | None, typer.Option(
        "--checkpoint", help="Report learned rate1/rate2 of this checkpoint (repeat to compare several in --plot).")] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="PNG of |rate1|, |rate2| and log|rate1/rate2| per ACmix layer (paper Fig. 5), one line per checkpoint.")] = None,
    non_strict: Annotated[bool, typer.Option("--non-strict", help="Allow a partial checkpoint load.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Parameters and MACs, total and split into ACmix stage I / stage II per block (paper Table 1).

    With --checkpoint: the learned rate1 / rate2 of every ACmix block; --plot draws them (paper Fig. 5).
    """
    from acmix_deploy.errors import AcmixError
    from acmix_deploy.flops import model_stats
    from acmix_deploy.registry import create_model

    checkpoints = list(checkpoint or [])
    if plot is not None and not checkpoints:
        raise AcmixError("--plot draws learned rates: give at least one --checkpoint")
    rates = _checkpoint_rates(checkpoints, plot)
    loaded = None
    if checkpoints:
        loaded = create_model(model, checkpoint=checkpoints[0], strict=not non_strict)
        model = loaded.build_config["name"]
        _print_load_report(loaded)
    if model is None:
        raise AcmixError("give --model NAME (or a --checkpoint written by acmix-deploy)")
    overrides = dict(loaded.build_config["overrides"]) if loaded is not None else {}
    trained_size = overrides.pop("img_size", None)
    if img_size is None and loaded is not None:  # the checkpoint's own size (a 32 px digits run), not the card's
        img_size = int(trained_size or loaded.card.input_size)
    stats = model_stats(model, img_size, model=loaded, **overrides)
    if json_out:
        out = stats.to_dict()
        if rates:
            out["rates"] = {label: [p.to_dict() for p in pairs] for label, pairs in rates.items()}
        emit_json(out)
        return
    console = stdout_console()
    if plot is not None:
        console.print(f"wrote {escape(str(plot))} (rates of {len(rates)} checkpoint(s))")
    console.print(
        f"[bold]{model}[/] at {stats.img_size}x{stats.img_size}: {stats.params / 1e6:.2f} M params, "
        f"{stats.total_macs / 1e9:.3f} GMACs ({stats.conv_matmul_macs / 1e9:.3f} conv/matmul"
        + (f" + {stats.attention_macs / 1e9:.3f} local attention" if stats.attention_macs else "")
        + ")"
    )
    if not stats.blocks:
        console.print("no ACmix blocks (plain baseline)")
        return
    table = Table(title="ACmix blocks: stage I (q/k/v projections) vs stage II (aggregation), MMACs")
    for col in ("block", "stage I", "stage II", "stage I share", "rate1", "rate2"):
        table.add_column(col, justify="left" if col == "block" else "right")
    for b in stats.blocks:
        share = b.stage1_macs / max(b.stage1_macs + b.stage2_macs, 1)
        table.add_row(b.path, f"{b.stage1_macs / 1e6:.1f}", f"{b.stage2_macs / 1e6:.1f}", f"{share:.0%}",
                      "-" if b.rate1 is None else f"{b.rate1:.3f}", "-" if b.rate2 is None else f"{b.rate2:.3f}")
    total = stats.stage1_macs + stats.stage2_macs
    table.add_row("[bold]sum[/]", f"{stats.stage1_macs / 1e6:.1f}", f"{stats.stage2_macs / 1e6:.1f}",
                  f"{stats.stage1_macs / max(total, 1):.0%}", "", "")
    console.print(table)


def _checkpoint_rates(checkpoints: list[Path], plot: Path | None) -> dict:
    """label -> RatePair list per checkpoint (labels: file names, or paths where names repeat); the PNG."""
    if not checkpoints:
        return {}
    from acmix_deploy.rates import checkpoint_rates, write_rates_plot

    names = [p.name for p in checkpoints]
    labels = names if len(set(names)) == len(names) else [str(p) for p in checkpoints]
    rates = {label: checkpoint_rates(p, required=plot is not None) for label, p in zip(labels, checkpoints)}
    rates = {label: pairs for label, pairs in rates.items() if pairs}
    if plot is not None:
        write_rates_plot(rates, plot)
    return rates


def _print_load_report(model) -> None:
    report = getattr(model, "load_report", None)
    if report is None:
        return
    if not report.ok:
        warn(f"partial load: {report.summary()}")
    for line in report.lines():  # resized tables first, then any mismatched keys
        stdout_console(stderr=True).print(f"  {line}", highlight=False, markup=False)  # stdout may hold --json


@app.command("doctor")
def doctor_cmd(
    json_out: JsonOption = False,
    gpu_check: Annotated[
        bool, typer.Option("--gpu-check", help="Run every GPU-capable path here and write a report (see README).")
    ] = False,
    output_dir: gpu_cli.OutOption = None,
    quick: gpu_cli.QuickOption = False,
    device: gpu_cli.DeviceOption = None,
    budget_s: gpu_cli.BudgetOption = None,
    only: gpu_cli.OnlyOption = None,
    workdir: gpu_cli.WorkdirOption = None,
) -> None:
    """Which backends are importable, their versions, and the GPU; --gpu-check runs the GPU paths."""
    if gpu_check:
        raise typer.Exit(gpu_cli.run_cli(output_dir, quick, device, budget_s, workdir, only))
    if output_dir is not None or quick or device is not None or budget_s is not None or workdir is not None or only:
        from acmix_deploy.errors import AcmixError

        raise AcmixError("-o, --quick, --device, --budget-s and --only go with --gpu-check")
    from acmix_deploy.doctor import collect

    rows = collect()
    if json_out:
        emit_json(rows)
        return
    table = Table(title="acmix-deploy doctor")
    for col in ("component", "status", "details"):
        table.add_column(col)
    for r in rows:
        style = "green" if r["available"] else "yellow"
        table.add_row(r["name"], f"[{style}]{'ok' if r['available'] else 'missing'}[/]", escape(r["details"]))
    stdout_console().print(table)
