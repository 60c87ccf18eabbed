"""A load generator for Triton servers on tritonclient's asyncio HTTP client.

For each concurrency C, C workers each keep one request in flight; after a warm-up, requests that
complete inside a fixed window are counted. Definitions follow perf_analyzer's: throughput =
completed requests / window seconds (infer/s at batch 1 per request), latency = client-side time from
send to response, reported as p50 / p90 / p99; errors are failed requests in the window. The
server's own batch statistics (`/v2/models/NAME/stats`, batch_stats) are read at the window's start
and end, so the report says which batch sizes the dynamic batcher formed under that load.

Every loop is bounded: by the window's end time and by `max_requests` per worker.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from acmix_deploy.errors import AcmixError, first_line
from acmix_deploy.serve import SERVE_EXTRA_HINT

FORMAT = "acmix-deploy-loadtest/1"
NP_TYPES = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32, "UINT8": np.uint8}


@dataclass
class Level:
    """One concurrency level against one server."""

    server: str
    concurrency: int
    completed: int
    errors: int
    window_s: float
    throughput: float  # completed / window_s
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    batch_histogram: dict[int, int] = field(default_factory=dict)  # server batch size -> executions
    error_samples: list[str] = field(default_factory=list)

    @property
    def mean_batch(self) -> float | None:
        runs = sum(self.batch_histogram.values())
        return sum(b * n for b, n in self.batch_histogram.items()) / runs if runs else None


@dataclass
class LoadReport:
    model: str
    url: str
    duration_s: float
    warmup_s: float
    levels: list[Level]
    baseline_url: str | None = None
    format: str = FORMAT

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for row, level in zip(data["levels"], self.levels):
            row["mean_batch"] = level.mean_batch
            row["batch_histogram"] = {str(k): v for k, v in level.batch_histogram.items()}
        return data


def _aio_client() -> Any:
    try:
        import tritonclient.http.aio as aio
    except ImportError:
        raise AcmixError(f"loadtest needs tritonclient: {SERVE_EXTRA_HINT}") from None
    return aio


def _strip_scheme(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/")


def request_inputs(metadata: dict[str, Any], image: bytes | None, seed: int = 0) -> list[tuple[str, np.ndarray, str]]:
    """One batch-1 request's inputs from the model metadata: random tensors, or `image` for BYTES inputs."""
    rng = np.random.default_rng(seed)
    out = []
    for spec in metadata["inputs"]:
        shape = [1 if d < 0 else int(d) for d in spec["shape"]]
        if spec["datatype"] == "BYTES":
            if image is None:
                raise AcmixError(f"input {spec['name']!r} takes encoded images: pass --image FILE")
            out.append((spec["name"], np.full(shape, image, dtype=object), "BYTES"))
            continue
        if spec["datatype"] not in NP_TYPES:
            raise AcmixError(f"input {spec['name']!r} has data type {spec['datatype']}, which loadtest cannot generate")
        out.append((spec["name"], rng.standard_normal(shape).astype(NP_TYPES[spec["datatype"]]), spec["datatype"]))
    return out


def _batch_counts(stats: dict[str, Any]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for model in stats.get("model_stats", []):
        for row in model.get("batch_stats", []):
            counts[int(row["batch_size"])] = counts.get(int(row["batch_size"]), 0) + int(row["compute_infer"]["count"])
    return counts


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values) * 1e3, q)) if values else None


async def _level(url: str, model: str, concurrency: int, duration_s: float, warmup_s: float, image: bytes | None,
                 max_requests: int, timeout_s: float) -> Level:
    aio = _aio_client()
    from tritonclient.http import InferInput

    client = aio.InferenceServerClient(_strip_scheme(url), conn_limit=max(concurrency, 1), conn_timeout=timeout_s)
    try:
        metadata = await client.get_model_metadata(model)
        config = await client.get_model_config(model)
        metadata["max_batch_size"] = config.get("max_batch_size", 0)
        values = request_inputs(metadata, image)
        inputs = []
        for name, array, dtype in values:
            item = InferInput(name, list(array.shape), dtype)
            item.set_data_from_numpy(array, binary_data=True)
            inputs.append(item)
        start = time.perf_counter()
        t_open, t_close = start + warmup_s, start + warmup_s + duration_s
        latencies: list[float] = []
        errors: list[str] = []
        snapshots: dict[str, dict[int, int]] = {}

        async def worker() -> None:
            for _ in range(max_requests):
                if time.perf_counter() >= t_close:
                    return
                t0 = time.perf_counter()
                try:
                    await asyncio.wait_for(client.infer(model, inputs), timeout_s)
                    ok, why = True, ""
                except Exception as exc:  # tritonclient, aiohttp and asyncio raise their own types
                    ok, why = False, first_line(exc)
                t1 = time.perf_counter()
                if t_open <= t1 <= t_close:
                    if ok:
                        latencies.append(t1 - t0)
                    else:
                        errors.append(why)

        async def snapshot(at: float, key: str) -> None:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            snapshots[key] = _batch_counts(await client.get_inference_statistics(model))

        await asyncio.gather(*(worker() for _ in range(concurrency)), snapshot(t_open, "open"), snapshot(t_close, "close"))
    except AcmixError:
        raise
    except Exception as exc:  # connection refused, unknown model ...
        raise AcmixError(f"loadtest against {url} model {model!r} failed: {first_line(exc)}") from None
    finally:
        await client.close()
    hist = {b: n - snapshots.get("open", {}).get(b, 0) for b, n in snapshots.get("close", {}).items()}
    return Level(url, concurrency, len(latencies), len(errors), duration_s, len(latencies) / duration_s,
                 _percentile(latencies, 50), _percentile(latencies, 90), _percentile(latencies, 99),
                 {b: n for b, n in sorted(hist.items()) if n > 0}, sorted(set(errors))[:5])


def loadtest(url: str, model: str, concurrencies: list[int], duration_s: float = 5.0, warmup_s: float = 1.0,
             image: str | Path | None = None, baseline_url: str | None = None, max_requests: int = 100_000,
             timeout_s: float = 30.0) -> LoadReport:
    """Run every concurrency level (against the baseline server too, interleaved level by level)."""
    if not concurrencies or min(concurrencies) < 1:
        raise AcmixError(f"--concurrency takes integers >= 1, got {concurrencies}")
    if duration_s <= 0 or warmup_s < 0:
        raise AcmixError("--duration must be > 0 and --warmup >= 0 seconds")
    data = Path(image).read_bytes() if image is not None else None
    levels: list[Level] = []
    for c in concurrencies:
        for target in [url] + ([baseline_url] if baseline_url else []):
            levels.append(asyncio.run(_level(target, model, c, duration_s, warmup_s, data, max_requests, timeout_s)))
    return LoadReport(model, url, duration_s, warmup_s, levels, baseline_url)


def loadtest_in_process(timeout_s: float | None = None, **kwargs: Any) -> dict[str, Any]:
    """`loadtest(**kwargs)` in a child interpreter (its own process group, killed on timeout), so the
    client never shares a GIL with the caller; returns the report as a dict."""
    import os
    import signal
    import subprocess
    import sys

    levels = len(kwargs.get("concurrencies", [])) * (2 if kwargs.get("baseline_url") else 1)
    limit = timeout_s or 60 + levels * (kwargs.get("duration_s", 5.0) + kwargs.get("warmup_s", 1.0) + 30)
    cmd = [sys.executable, "-m", "acmix_deploy.serve.loadtest", json.dumps(kwargs, default=str)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AcmixError(f"loadtest did not finish within {limit:.0f} s") from None
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        last = lines[-1] if lines else f"loadtest exited with code {proc.returncode}"
        raise AcmixError(last.removeprefix("error: "))
    return json.loads(out)


def write_csv(report: dict[str, Any], path: Path) -> None:
    from acmix_deploy.fileio import write_bytes_atomic

    cols = ["server", "concurrency", "throughput", "p50_ms", "p90_ms", "p99_ms", "completed", "errors", "mean_batch"]
    lines = [",".join(cols)]
    for row in report["levels"]:
        lines.append(",".join("" if row[c] is None else (f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c])) for c in cols))
    write_bytes_atomic(path, ("\n".join(lines) + "\n").encode())


def write_json(report: dict[str, Any], path: Path) -> None:
    from acmix_deploy.fileio import write_bytes_atomic

    write_bytes_atomic(path, json.dumps(report, indent=2).encode())


def plot(report: dict[str, Any], path: Path, title: str | None = None) -> None:
    """Latency (p50 and p99) against throughput, one curve per server, points labelled by concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from acmix_deploy.fileio import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for server in dict.fromkeys(r["server"] for r in report["levels"]):
        rows = [r for r in report["levels"] if r["server"] == server and r["p50_ms"] is not None]
        x = [r["throughput"] for r in rows]
        line, = ax.plot(x, [r["p50_ms"] for r in rows], "o-", label=f"p50 {server}")
        ax.plot(x, [r["p99_ms"] for r in rows], "s--", color=line.get_color(), alpha=0.6, label=f"p99 {server}")
        for r in rows:
            ax.annotate(f"c={r['concurrency']}", (r["throughput"], r["p50_ms"]), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("throughput (infer/s)")
    ax.set_ylabel("client latency (ms)")
    ax.set_title(title or f"{report['model']}: latency vs throughput")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":  # the child of loadtest_in_process: kwargs as JSON in, the report as JSON out
    import sys

    try:
        print(json.dumps(loadtest(**json.loads(sys.argv[1])).to_dict()))
    except AcmixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
