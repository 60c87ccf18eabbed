"""Reports of a BenchResult: rich table, versioned JSON, CSV and a PNG plot.

JSON schema, version "1.0" (`schema_version`; the major number changes when a field changes
meaning or disappears, the minor number when fields are added):

    {
      "schema_version": "1.0",
      "kind": "acmix-deploy/bench",
      "created": "2026-01-31T12:00:00Z",            # UTC
      "command": "acmix-deploy bench ...",          # exact CLI equivalent of the run
      "config": {                                   # resolved settings (BenchConfig)
        "model", "onnx", "engine", "baseline", "shift": str | null,
        "backends": [str], "batches": [int], "img_size": int | null,
        "warmup_s", "duration_s": float | null, "warmup_iterations", "iterations": int | null,
        "threads": int, "device": "cpu" | "cuda",
        "cuda_graph", "include_transfers", "memory": bool
      },
      "method": {
        "interleaved": bool,            # model and baseline alternated round by round
        "ort_spinning": bool,           # ONNX Runtime session.intra_op.allow_spinning
        "timer": str,                   # CUDA events on GPU backends, perf_counter_ns on CPU ones
        "statistic": "median", "throughput": "batch * 1000 / median_ms",
        "cv": "std (ddof=1) / mean", "cv_warn": 0.05,
        "ratio": "median over rounds of model_ms / baseline_ms (same backend and batch)",
        "median_ratio": "model median / baseline median",
        "memory": "peak RSS of a spawned child process running only that backend"
      },
      "machine": {
        "os", "python", "cpu_model": str, "cpu_logical_cores", "cpu_physical_cores",
        "cpu_usable": int, "memory_total_mb": float, "cuda": str | null,
        "gpus": [{"name", "memory_mb", "capability"}],
        "versions": {"acmix-deploy", "torch", "onnxruntime", "onnx", "numpy", ...: str},
        "env": {"OMP_WAIT_POLICY", "OMP_NUM_THREADS", ...: str}   # only the variables that are set
      },
      "models": {"model": SOURCE, "baseline": SOURCE | absent},
          # SOURCE = {"label", "name", "onnx", "engine": str | null, "input_size": [H, W], "overrides": {}}
      "rows": [{
        "role": "model" | "baseline", "model": str, "backend": str, "batch": int,
        "status": "ok" | "unavailable" | "failed", "reason": str | null,
        "iterations": int | null,
        "latency_ms": {"mean", "median", "p90", "p95", "p99", "min", "max", "std"} | null,
        "throughput_ips": float | null, "cv": float | null, "cv_warning": bool,
        "memory": {"peak_rss_mb", "base_rss_mb", "added_rss_mb", "gpu_peak_mb", "gpu_method"} | null,
        "memory_error": str | null,
        "ratio": float | null, "median_ratio": float | null     # model rows with a baseline
      }],
      "notes": [str]
    }

CSV: one line per row with the columns in CSV_COLUMNS (empty cells for missing values).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acmix_deploy.bench.stats import CV_WARN
from acmix_deploy.errors import AcmixError
from acmix_deploy.fileio import atomic_path

if TYPE_CHECKING:
    from rich.console import Console

    from acmix_deploy.bench.run import BenchResult, BenchRow

SCHEMA_KIND = "acmix-deploy/bench"
CSV_COLUMNS = (
    "role", "model", "backend", "batch", "status", "reason", "iterations",
    "mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms", "min_ms", "max_ms", "std_ms",
    "throughput_ips", "cv", "cv_warning", "peak_rss_mb", "added_rss_mb", "gpu_peak_mb",
    "ratio", "median_ratio",
)  # fmt: skip
_LATENCY_KEYS = ("mean", "median", "p90", "p95", "p99", "min", "max", "std")


def _row_dict(row: BenchRow) -> dict[str, Any]:
    s = row.stats
    return {
        "role": row.role,
        "model": row.model,
        "backend": row.backend,
        "batch": row.batch,
        "status": row.status,
        "reason": row.reason,
        "iterations": s.iterations if s else None,
        "latency_ms": {k: getattr(s, f"{k}_ms") for k in _LATENCY_KEYS} if s else None,
        "throughput_ips": s.throughput_ips if s else None,
        "cv": s.cv if s else None,
        "cv_warning": bool(s and s.noisy),
        "memory": row.memory.to_dict() if row.memory else None,
        "memory_error": row.memory_error,
        "ratio": row.ratio,
        "median_ratio": row.median_ratio,
    }


def to_json_dict(result: BenchResult) -> dict[str, Any]:
    """The versioned JSON document of a result (schema in the module docstring)."""
    from dataclasses import asdict

    cfg = asdict(result.config)
    cfg["backends"] = list(cfg["backends"])
    cfg["batches"] = list(cfg["batches"])
    return {
        "schema_version": result.schema_version,
        "kind": SCHEMA_KIND,
        "created": result.created,
        "command": result.config.command(),
        "config": cfg,
        "method": {
            "interleaved": result.interleaved,
            "ort_spinning": result.ort_spinning,
            "timer": "CUDA events for backends on a GPU, perf_counter_ns for backends on the CPU",
            "statistic": "median",
            "throughput": "batch * 1000 / median_ms",
            "cv": "std (ddof=1) / mean",
            "cv_warn": CV_WARN,
            "ratio": "median over rounds of model_ms / baseline_ms (same backend and batch)",
            "median_ratio": "model median / baseline median",
            "memory": "peak RSS of a spawned child process running only that backend",
        },
        "machine": result.machine,
        "models": result.models,
        "rows": [_row_dict(r) for r in result.rows],
        "notes": list(result.notes),
    }


def write_json(result: BenchResult | dict[str, Any], path: str | os.PathLike[str]) -> Path:
    doc = result if isinstance(result, dict) else to_json_dict(result)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return Path(path)


def load_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a bench JSON document, refusing other kinds and unknown major schema versions."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise AcmixError(f"cannot read bench results {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != SCHEMA_KIND:
        raise AcmixError(f"{path} is not an acmix-deploy bench result")
    if str(doc.get("schema_version", "")).split(".")[0] != "1":
        raise AcmixError(f"{path} has schema version {doc.get('schema_version')}; this version reads 1.x")
    return doc


def csv_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for row in doc["rows"]:
        lat = row["latency_ms"] or {}
        mem = row["memory"] or {}
        flat = {k: row.get(k) for k in ("role", "model", "backend", "batch", "status", "reason", "iterations")}
        flat.update({f"{k}_ms": lat.get(k) for k in _LATENCY_KEYS})
        flat.update(
            throughput_ips=row["throughput_ips"],
            cv=row["cv"],
            cv_warning=row["cv_warning"],
            peak_rss_mb=mem.get("peak_rss_mb"),
            added_rss_mb=mem.get("added_rss_mb"),
            gpu_peak_mb=mem.get("gpu_peak_mb"),
            ratio=row["ratio"],
            median_ratio=row["median_ratio"],
        )
        out.append(flat)
    return out


def write_csv(result: BenchResult | dict[str, Any], path: str | os.PathLike[str]) -> Path:
    doc = result if isinstance(result, dict) else to_json_dict(result)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for row in csv_rows(doc):
                writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return Path(path)


# ------------------------------------------------------------------------------------- plot

def write_plot(result: BenchResult | dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """PNG: median latency and throughput vs batch (log-log), one colour per backend, solid for
    the model, dashed for the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    doc = result if isinstance(result, dict) else to_json_dict(result)
    ok = [r for r in doc["rows"] if r["status"] == "ok"]
    if not ok:
        raise AcmixError("nothing to plot: no backend produced a measurement")
    fig, (ax_lat, ax_tp) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    backends = list(dict.fromkeys(r["backend"] for r in ok))
    batches = sorted({r["batch"] for r in ok})
    for i, backend in enumerate(backends):
        colour = colours[i % len(colours)]
        for role, style in (("model", "-"), ("baseline", "--")):
            pts = sorted((r for r in ok if r["backend"] == backend and r["role"] == role), key=lambda r: r["batch"])
            if not pts:
                continue
            xs = [r["batch"] for r in pts]
            med = [r["latency_ms"]["median"] for r in pts]
            label = f"{pts[0]['model']} / {backend}"
            ax_lat.plot(xs, med, style, marker="o", color=colour, label=label)
            ax_tp.plot(xs, [r["throughput_ips"] for r in pts], style, marker="o", color=colour, label=label)
    for ax, title, ylabel in (
        (ax_lat, "Latency (median)", "ms per batch"),
        (ax_tp, "Throughput (from the median)", "images / s"),
    ):
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        if len(batches) > 1:
            ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(batches)
        ax.set_xticklabels([str(b) for b in batches])
        ax.grid(True, which="major", alpha=0.3)
    legend_title = "solid: model, dashed: baseline" if "baseline" in doc["models"] else None
    # long handles: with the default length the marker in the middle hides the dashes of a baseline
    ax_lat.legend(fontsize=8, loc="best", title=legend_title, title_fontsize=8, handlelength=4.5)
    m = doc["machine"]
    gpu = ", ".join(g["name"] for g in m.get("gpus") or []) or "no GPU"
    fig.suptitle(
        f"{doc['models']['model']['label']} - {m.get('cpu_model')}, {doc['config']['threads']} threads, {gpu}",
        fontsize=10,
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


# ------------------------------------------------------------------------------------ table

def fmt_number(x: float | None, digits: int = 2) -> str:
    """A table cell: "-" for None, whole numbers from 1000 up (with thousands separators)."""
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def _collapsed(rows: list[BenchRow]) -> list[tuple[BenchRow, str]]:
    """Rows for display: a role/backend unavailable at every batch for one reason shows once."""
    out: list[tuple[BenchRow, str]] = []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        if row.status != "ok":
            same = [r for r in rows if r.role == row.role and r.backend == row.backend]
            if len(same) > 1 and all(r.status == row.status and r.reason == row.reason for r in same):
                if (row.role, row.backend) in seen:
                    continue
                seen.add((row.role, row.backend))
                out.append((row, "all"))
                continue
        out.append((row, str(row.batch)))
    return out


# (header, justify, value of an ok row); essential columns first, then the optional ones in the order
# they are dropped last-to-first when the console is narrower than the table (all of them are in JSON / CSV)
def _ms(key: str):
    return lambda row: fmt_number(getattr(row.stats, key))


_ESSENTIAL = (("median", _ms("median_ms")), ("p90", _ms("p90_ms")),
              ("img/s", lambda row: fmt_number(row.stats.throughput_ips, 1)),
              ("CV", lambda row: f"[yellow]{row.stats.cv:.1%} ![/yellow]" if row.stats.noisy else f"{row.stats.cv:.1%}"))
_OPTIONAL = (("peak RSS MiB", lambda row: fmt_number(row.memory.peak_rss_mb, 0) if row.memory else "-"),
             ("p99", _ms("p99_ms")), ("mean", _ms("mean_ms")), ("min", _ms("min_ms")), ("max", _ms("max_ms")),
             ("p95", _ms("p95_ms")))  # fmt: skip


def _gpu_cell(row: BenchRow) -> str:
    gpu_mb = row.memory.gpu_peak_mb if row.memory else None
    return fmt_number(gpu_mb, 0) if gpu_mb is not None else "-"


def _build_table(result: BenchResult, value_columns, reasons: list[str]):
    """The table with `value_columns` (header, fn) after backend / batch / model; reasons of rows that
    did not run are numbered into `reasons` (printed under the table, never cut)."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    has_base = "baseline" in result.models
    table = Table(title=f"acmix-deploy bench: {escape(result.models['model']['label'])}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)  # fmt: skip
    table.add_column("backend", no_wrap=True)
    table.add_column("batch", justify="right", no_wrap=True)
    table.add_column("model", overflow="fold")
    n_first = len(_ESSENTIAL)
    for header, _ in value_columns[:n_first]:
        table.add_column(header, justify="right", no_wrap=True)
    if has_base:
        table.add_column("ratio", justify="right", no_wrap=True)
    for header, _ in value_columns[n_first:]:
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("note", overflow="fold")
    reasons.clear()
    prev_backend = None
    for row, batch in _collapsed(result.rows):
        if prev_backend is not None and row.backend != prev_backend:
            table.add_section()
        prev_backend = row.backend
        cells = [row.backend, batch, escape(row.model)]  # `name[shift=tensor]` is not rich markup
        values = ["-"] * len(value_columns) if row.stats is None else [fn(row) for _, fn in value_columns]
        ratio = [f"[bold]{row.ratio:.2f}x[/bold]" if row.ratio is not None else ""] if has_base else []
        cells += values[:n_first] + ratio + values[n_first:]
        note = ""
        if row.stats is None:
            reasons.append(f"{row.backend}, {row.model}: {row.status}: {row.reason}")
            note = f"see ({len(reasons)})"
        elif row.memory_error:
            reasons.append(f"{row.backend}, {row.model}: memory: {row.memory_error}")
            note = f"see ({len(reasons)})"
        cells.append(note)
        style = "dim" if row.status != "ok" else ("italic" if row.role == "baseline" else None)
        table.add_row(*cells, style=style)
    return table


def render_table(result: BenchResult, console: Console) -> None:
    """The terminal table: one line per backend x batch x role; ratio on model lines. Columns that do
    not fit the console's width are left out (the JSON / CSV have them all); nothing is cut."""
    from rich.console import Console as _Console
    from rich.measure import Measurement

    wide = _Console(width=100_000, color_system=None)  # a table's measurement is capped at the console's width
    has_gpu = any(r.memory and r.memory.gpu_peak_mb is not None for r in result.rows)
    optional = list(_OPTIONAL)
    if has_gpu:
        optional.insert(1, ("GPU MiB", _gpu_cell))
    reasons: list[str] = []
    while True:
        table = _build_table(result, list(_ESSENTIAL) + optional, reasons)
        width = Measurement.get(wide, wide.options, table).maximum
        if width <= console.width or not optional:
            break
        optional.pop()
    console.print(table)
    for i, reason in enumerate(reasons, 1):
        console.print(f"({i}) {reason}", highlight=False, markup=False, soft_wrap=True)
    cfg = result.config
    has_base = "baseline" in result.models
    timing = f"{cfg.iterations} iterations" if cfg.iterations else f"{cfg.duration_s:g} s per batch"
    console.print(
        f"{cfg.threads} threads, {timing}, device {cfg.device}; latencies in ms; "
        + ("interleaved with the baseline, ONNX Runtime spinning off" if result.interleaved else "backends timed one at a time")
        + ("; ratio = median over rounds of model / baseline time" if has_base else ""),
        soft_wrap=True,
    )
    for note in result.notes:
        if note in result.inputs:  # already said while running (see bench's progress lines)
            continue
        console.print(f"[yellow]note:[/yellow] {note}" if note.startswith("noisy") else f"note: {note}",
                      soft_wrap=True, highlight=False)
