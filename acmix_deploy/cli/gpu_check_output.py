"""The command-line face of gpu-check, shared by `acmix-deploy doctor --gpu-check` and
`benchmarks/gpu_check.py`: the same options, one progress line per row, a one-screen summary.

Exit status: 0 when no row failed (rows that are "not available here" do not fail a run), 1 when a
row failed, 2 for bad options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acmix_deploy.errors import AcmixError

DEFAULT_OUT = Path("out/gpu_check")
_STYLE = {"ok": "green", "not available": "yellow", "failed": "bold red"}

OutOption = Annotated[
    Path | None, typer.Option("-o", "--output", help=f"Report folder for gpu_check.json and gpu_check.md (default: {DEFAULT_OUT}).")
]
QuickOption = Annotated[bool, typer.Option("--quick", help="At most 2 minutes: skips torch.compile and the Swin parity rows.")]
DeviceOption = Annotated[
    str | None,
    typer.Option("--device", help="cuda: check the GPU paths; cpu: the dry mode (CPU analogues, tiny models) (default: cuda)."),
]
BudgetOption = Annotated[
    float | None, typer.Option("--budget-s", help="Time budget in seconds (default: 300; --quick 120; --device cpu 60).")
]
OnlyOption = Annotated[
    list[str] | None,
    typer.Option("--only", help="Run only these paths (names or prefixes, comma-separated: torch, onnx, tensorrt, "
                 "timing, train-steps ...); the others are reported as skipped."),
]
WorkdirOption = Annotated[
    Path | None, typer.Option("--workdir", hidden=True, help="Keep exports here and reuse them in later runs (tests).")
]


def _status(status: str) -> str:
    text = "not available here" if status == "not available" else status
    return f"[{_STYLE[status]}]{text}[/]"


def print_row(console, row) -> None:
    from rich.markup import escape

    console.print(f"{_status(row.status)}  {row.path} {row.precision}  {escape(row.subject)}  [dim]{row.device}, "
                  f"{row.seconds:.1f} s[/]: {escape(row.reason)}", highlight=False, soft_wrap=True)


def print_summary(console, report) -> None:
    """One screen: a table of the rows that ran (ok / failed), the others grouped by reason."""
    from rich.markup import escape
    from rich.table import Table

    from acmix_deploy.gpucheck.report import key_numbers

    ran = [r for r in report.rows if r.status != "not available"]
    if ran:
        table = Table(title="acmix-deploy gpu-check", pad_edge=False)
        for col in ("path", "prec", "subject", "dev", "status", "numbers / reason"):
            table.add_column(col, no_wrap=col != "numbers / reason", overflow="fold")
        for row in ran:
            detail = key_numbers(row.to_dict()) if row.status == "ok" else row.reason
            table.add_row(row.path, row.precision, escape(row.subject), row.device, _status(row.status),
                          escape(detail or row.reason))
        console.print(table)
    groups: dict[str, list[str]] = {}
    for row in report.rows:
        if row.status == "not available":
            groups.setdefault(row.reason, []).append(f"{row.path} {row.precision} ({row.subject})")
    for reason, rows in groups.items():
        shown = ", ".join(rows[:4]) + (f" and {len(rows) - 4} more" if len(rows) > 4 else "")
        console.print(f"{_status('not available')}: {escape(reason)} [dim]- {escape(shown)}[/]",
                      highlight=False, soft_wrap=True)
    counts = report.counts()
    console.print(f"{counts['ok']} ok, {counts['not available']} not available here, {counts['failed']} failed; "
                  f"report: {report.json_path} and {report.markdown_path}", highlight=False, soft_wrap=True)


def run_cli(output_dir: Path | None, quick: bool, device: str | None, budget_s: float | None = None,
            workdir: Path | None = None, only: list[str] | None = None) -> int:
    """Run the check with console output; returns the exit status (1 when a row failed)."""
    from acmix_deploy.cli._options import stdout_console
    from acmix_deploy.gpucheck.plan import DEVICES
    from acmix_deploy.gpucheck.run import CheckOptions, run_gpu_check

    device = (device or "cuda").strip().lower()
    if device not in DEVICES:
        raise AcmixError(f"--device must be cpu or cuda, got {device!r}")
    if budget_s is not None and budget_s <= 0:
        raise AcmixError(f"--budget-s must be positive, got {budget_s}")
    out = Path(output_dir or DEFAULT_OUT)
    if out.exists() and not out.is_dir():
        raise AcmixError(f"-o {out} is a file; give a folder")
    console = stdout_console()
    from acmix_deploy.cli._options import split_list

    options = CheckOptions(out_dir=out, device=device, quick=quick, budget_s=budget_s, workdir=workdir,
                           only=split_list(only) or None)
    report = run_gpu_check(options, on_row=lambda row, _report: print_row(console, row))
    print_summary(console, report)
    return 1 if report.failed else 0
