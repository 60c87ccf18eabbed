#!/usr/bin/env python3
"""Prove the GPU paths on the GPU we get: the same check as `acmix-deploy doctor --gpu-check`.

    PYTHONPATH=. python benchmarks/gpu_check.py [--quick] [-o DIR] [--device cuda|cpu] [--budget-s S] [--only P]

Runs from a checkout (no install needed). Writes DIR/gpu_check.json (versioned, machine block,
one row per path) and DIR/gpu_check.md after every row, prints a one-screen summary, and exits 1
when a row failed. `--device cpu` is the dry mode (tiny models, CPU analogues, under a minute).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's acmix_deploy first

import typer  # noqa: E402

from acmix_deploy.cli import gpu_check_output as gpu_cli  # noqa: E402
from acmix_deploy.cli._entry import run  # noqa: E402


def main(
    output_dir: gpu_cli.OutOption = None,
    quick: gpu_cli.QuickOption = False,
    device: gpu_cli.DeviceOption = None,
    budget_s: gpu_cli.BudgetOption = None,
    only: gpu_cli.OnlyOption = None,
    workdir: gpu_cli.WorkdirOption = None,
) -> None:
    """Run every GPU-capable path here; report the others as not available."""
    raise typer.Exit(gpu_cli.run_cli(output_dir, quick, device, budget_s, workdir, only))


if __name__ == "__main__":  # under the CLI's one handler: one-line errors, signals, exit codes
    app = typer.Typer(add_completion=False)
    app.command()(main)
    run(app, None, prog_name="gpu_check.py")
