"""The README performance table: bench results -> markdown with machine, versions and commands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from acmix_deploy.bench.machine import PACKAGES
from acmix_deploy.bench.report import fmt_number, to_json_dict


def _doc(result: Any) -> dict[str, Any]:
    return result if isinstance(result, dict) else to_json_dict(result)


def _machine_line(m: dict[str, Any], threads: int) -> str:
    gpus = ", ".join(g["name"] for g in m.get("gpus") or []) or "no GPU"
    cores = m.get("cpu_logical_cores")
    return (
        f"{m.get('cpu_model')} ({cores} logical cores, {m.get('cpu_usable')} usable, {threads} threads used), "
        f"{gpus}; {m.get('os')}, Python {m.get('python')}"
    )


def _versions_line(m: dict[str, Any]) -> str:
    v = m.get("versions") or {}
    keys = [k for k in PACKAGES if k in v] + sorted(k for k in v if k not in PACKAGES)
    return ", ".join(f"{k} {v[k]}" for k in keys)


def render_markdown(results: Sequence[Any], title: str | None = "Performance") -> str:
    """Markdown: one table over all results (model rows, with the baseline beside them), then
    the machine(s), library versions, method and the exact commands that produced the numbers."""
    docs = [_doc(r) for r in results]
    lines: list[str] = []
    if title:
        lines += [f"### {title}", ""]
    lines += [
        "| Model | Backend | Batch | Median ms | p90 ms | img/s | Baseline | Baseline median ms | Ratio |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    missing: list[str] = []
    for doc in docs:
        rows = doc["rows"]
        for row in rows:
            if row["role"] != "model":
                continue
            if row["status"] != "ok":
                item = f"{row['model']} / {row['backend']}: {row['status']}: {row['reason']}"
                if item not in missing:
                    missing.append(item)
                continue
            base = next(
                (r for r in rows if r["role"] == "baseline" and r["backend"] == row["backend"]
                 and r["batch"] == row["batch"] and r["status"] == "ok"),
                None,
            )  # fmt: skip
            lat = row["latency_ms"]
            ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
            lines.append(
                f"| {row['model']} | {row['backend']} | {row['batch']} "
                f"| {fmt_number(lat['median'])} | {fmt_number(lat['p90'])} "
                f"| {fmt_number(row['throughput_ips'], 1)} | {base['model'] if base else '-'} "
                f"| {fmt_number(base['latency_ms']['median']) if base else '-'} "
                f"| {ratio} |"
            )
    lines.append("")
    if missing:
        lines += ["Not measured: " + "; ".join(missing) + ".", ""]
    machines: list[str] = []
    versions: list[str] = []
    for doc in docs:
        line = _machine_line(doc["machine"], doc["config"]["threads"])
        if line not in machines:
            machines.append(line)
        v = _versions_line(doc["machine"])
        if v not in versions:
            versions.append(v)
    lines += [f"Machine: {m}" for m in machines] + [""]
    lines += [f"Versions: {v}" for v in versions] + [""]
    paired = [d for d in docs if d["method"]["interleaved"]]
    method = "Method: median latency after warm-up; img/s = batch x 1000 / median"
    if paired:
        method += (
            "; a model and its baseline run in one process, interleaved round by round on the same backend, "
            "ONNX Runtime thread spinning off; ratio = median over rounds of model time / baseline time "
            "(> 1: slower than the baseline)"
        )
    if len(paired) < len(docs):
        method += "; " + ("runs without a baseline" if paired else "no baseline") + ": each backend timed alone"
    lines += [
        method + ".",
        "",
        "Commands:",
        "",
        "```bash",
        *[d["command"] for d in docs],
        "```",
        "",
    ]
    return "\n".join(lines)
