"""The gpu-check report: one row per path, written again (atomically) after every row.

A kill at any moment leaves the last complete JSON and markdown on disk: each write goes to a
temporary file renamed over the previous one (acmix_deploy.fileio). `complete` says whether the
run reached its end.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from acmix_deploy.fileio import write_bytes_atomic

SCHEMA = "acmix-deploy/gpu-check"
SCHEMA_VERSION = 1
OK, NOT_AVAILABLE, FAILED = "ok", "not available", "failed"
STATUSES = (OK, NOT_AVAILABLE, FAILED)
JSON_NAME, MARKDOWN_NAME = "gpu_check.json", "gpu_check.md"


@dataclass
class Row:
    """One checked path: `reason` is the one-line why (the parity line, the missing backend, ...)."""

    path: str  # e.g. "torch-deploy", "onnxruntime-cuda", "timing"
    precision: str  # fp32 | fp16 | amp | "-"
    subject: str  # the model (or model pair / batch) the row is about
    device: str  # where it ran: cpu | cuda | "-"
    status: str
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def id(self) -> str:
        return f"{self.path}/{self.precision}/{self.subject}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self)}


@dataclass
class Report:
    """Rows plus the machine block and the run's options; `write()` puts both files in `out_dir`."""

    out_dir: Path
    options: dict[str, Any]
    machine: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    complete: bool = False

    @property
    def json_path(self) -> Path:
        return self.out_dir / JSON_NAME

    @property
    def markdown_path(self) -> Path:
        return self.out_dir / MARKDOWN_NAME

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.rows) for s in STATUSES}

    @property
    def failed(self) -> bool:
        return any(r.status == FAILED for r in self.rows)

    def add(self, row: Row) -> None:
        if row.status not in STATUSES:
            raise ValueError(f"row status {row.status!r} is not one of {STATUSES}")
        self.rows.append(row)
        self.write()

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "elapsed_s": round(time.time() - self.started, 2),
            "complete": self.complete,
            "options": self.options,
            "machine": self.machine,
            "counts": self.counts(),
            "rows": [r.to_dict() for r in self.rows],
        }

    def write(self) -> None:
        data = self.to_dict()
        write_bytes_atomic(self.json_path, (json.dumps(data, indent=2, default=str) + "\n").encode())
        write_bytes_atomic(self.markdown_path, to_markdown(data).encode())


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def key_numbers(row: dict[str, Any]) -> str:
    """The few numbers a reader wants first, as one short string."""
    n = row.get("numbers") or {}
    parts = []
    if str(n.get("gate", "")).startswith("cosine"):
        parts.append(f"cosine {n['cosine']:.6f} ({n['gate']}), max abs {n['max_abs']:.2e}")
    elif "max_abs" in n and "limit" in n:
        parts.append(f"max abs {n['max_abs']:.2e} (limit {n['limit']:.2e})")
    if "ratio" in n:
        parts.append(f"{n['model_ms']:.3f} / {n['baseline_ms']:.3f} ms = {n['ratio']:.2f}x")
    if "ms_per_step" in n:
        parts.append(f"{n['ms_per_step']:.1f} ms/step, loss {n['losses'][0]:.3f}->{n['losses'][-1]:.3f}")
    if "ms" in n and "ratio" not in n:
        parts.append(f"{n['ms']:.3f} ms")
    if "build_s" in n:
        parts.append(f"built in {n['build_s']:.1f} s")
    return "; ".join(parts)


def to_markdown(data: dict[str, Any]) -> str:
    """The report as markdown: machine, counts, one table row per path."""
    m = data["machine"]
    gpu = ", ".join(g["name"] for g in m.get("gpus") or []) or "none"
    lines = [
        f"# acmix-deploy gpu-check ({data['created']}, {'complete' if data['complete'] else 'INCOMPLETE'})",
        "",
        f"- device: {data['options'].get('device')}, quick: {data['options'].get('quick')}, "
        f"elapsed {data['elapsed_s']} s of a {data['options'].get('budget_s')} s budget",
        f"- GPU: {gpu}; driver {m.get('driver') or '-'}; CUDA {m.get('cuda') or '-'}; "
        f"torch {m.get('torch') or '-'}; onnxruntime {m.get('onnxruntime') or '-'} "
        f"({', '.join(m.get('onnxruntime_providers') or []) or '-'})",
        "- counts: " + ", ".join(f"{k} {v}" for k, v in data["counts"].items()),
        "",
        "| path | precision | subject | device | status | numbers | reason |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {_cell(r['path'])} | {r['precision']} | {_cell(r['subject'])} | {r['device']} | "
            f"{r['status']} | {_cell(key_numbers(r))} | {_cell(r['reason'])} |"
        )
    return "\n".join(lines) + "\n"
