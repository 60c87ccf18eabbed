#!/usr/bin/env python3
"""Served throughput on the bundled Triton server against the same ONNX file run in process.

    python benchmarks/serve_throughput.py [--threads 1] [--size 128] [--runs 3] [--duration 15] [--out DIR]

1. Exports resnet_acmix26 (random init) at --size px with a dynamic batch axis.
2. Starts `acmix-deploy serve FILE` (a child process: tritonserver + the python-backend runner model,
   ONNX Runtime CPU with --threads intra-op threads, dynamic batching up to --max-batch-size).
3. Each run: `loadtest` (its own process) at concurrency 8 for --duration s after a warm-up: served
   infer/s and the server's batch-size histogram for the window; then, with the server idle, the same
   ONNX file in this process (ONNX Runtime, the same threads) timed at every batch size of that
   histogram. In-process throughput weighted by the histogram = sum(n_b * b) / sum(n_b * t_b): what
   the same batches cost without the server. Ratio = served / in-process; median of --runs runs with
   the min-max spread. Target: >= 0.8.
4. The latency-throughput curve for concurrency 1, 2, 4, 8, 12, 16 (PNG, JSON, CSV).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODEL = "resnet_acmix26"


def export(size: int, workdir: Path) -> Path:
    from acmix_deploy.export import export_onnx

    path = workdir / f"{MODEL}_{size}.onnx"
    if not path.exists():
        export_onnx(MODEL, img_size=size, dynamic_batch=True, output=str(path))
    return path


def start_serve(onnx: Path, threads: int, max_batch: int, delay_us: int) -> tuple[subprocess.Popen, str]:
    from acmix_deploy.serve.server import free_port

    ports = [free_port() for _ in range(3)]
    cmd = [sys.executable, "-m", "acmix_deploy.cli", "serve", str(onnx), "--threads", str(threads),
           "--max-batch-size", str(max_batch), "--max-queue-delay-us", str(delay_us), "--model-name", MODEL,
           "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])]
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    url = f"127.0.0.1:{ports[0]}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    stop_serve(proc)
    raise SystemExit("serve was not ready within 300 s")


def stop_serve(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def in_process_seconds(session, size: int, batches: list[int], repeats: int) -> dict[int, float]:
    """Median seconds per session.run at each batch size (after two warm-up runs)."""
    name = session.get_inputs()[0].name
    out = {}
    for b in batches:
        x = np.random.default_rng(b).standard_normal((b, 3, size, size)).astype(np.float32)
        for _ in range(2):
            session.run(None, {name: x})
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            session.run(None, {name: x})
            times.append(time.perf_counter() - t0)
        out[b] = statistics.median(times)
    return out


def one_run(url: str, session, size: int, duration: float, warmup: float, repeats: int) -> dict:
    from acmix_deploy.serve.loadtest import loadtest_in_process

    report = loadtest_in_process(url=url, model=MODEL, concurrencies=[8], duration_s=duration, warmup_s=warmup)
    level = report["levels"][0]
    hist = {int(b): n for b, n in level["batch_histogram"].items()}
    seconds = in_process_seconds(session, size, sorted(hist), repeats)
    images = sum(b * n for b, n in hist.items())
    in_process = images / sum(n * seconds[b] for b, n in hist.items())
    return {"served": level["throughput"], "in_process": in_process, "ratio": level["throughput"] / in_process,
            "p50_ms": level["p50_ms"], "p99_ms": level["p99_ms"], "errors": level["errors"],
            "batch_histogram": hist, "in_process_ms_per_batch": {b: 1e3 * s for b, s in seconds.items()},
            "served_images_vs_completed": [images, level["completed"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--max-batch-size", type=int, default=16)
    ap.add_argument("--delay-us", type=int, default=2000)
    ap.add_argument("--curve", default="1,2,4,8,12,16")
    ap.add_argument("--curve-duration", type=float, default=6.0)
    ap.add_argument("--repeats", type=int, default=20, help="in-process timings per batch size")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "benchmarks" / "serve")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the export here (reused on a rerun)")
    args = ap.parse_args()

    from acmix_deploy.runners.ort import make_session
    from acmix_deploy.serve import loadtest as lt

    args.out.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="serve-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    onnx = export(args.size, workdir)
    session = make_session(onnx, threads=args.threads)
    proc, url = start_serve(onnx, args.threads, args.max_batch_size, args.delay_us)
    try:
        runs = [one_run(url, session, args.size, args.duration, args.warmup, args.repeats) for _ in range(args.runs)]
        curve = lt.loadtest_in_process(url=url, model=MODEL, concurrencies=[int(c) for c in args.curve.split(",")],
                                       duration_s=args.curve_duration, warmup_s=2.0)
    finally:
        stop_serve(proc)
    ratios = [r["ratio"] for r in runs]
    summary = {
        "format": "acmix-deploy-serve-bench/1", "model": MODEL, "size": args.size, "threads": args.threads,
        "max_batch_size": args.max_batch_size, "max_queue_delay_us": args.delay_us, "concurrency": 8,
        "duration_s": args.duration, "runs": runs, "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios), "ratio_max": max(ratios), "target": 0.8,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "cpus": os.cpu_count(),
    }
    (args.out / "serve_throughput.json").write_text(json.dumps(summary, indent=2))
    lt.write_json(curve, args.out / "serve_curve.json")
    lt.write_csv(curve, args.out / "serve_curve.csv")
    lt.plot(curve, args.out / "serve_curve.png",
            title=f"{MODEL} @{args.size} px, ORT CPU, {args.threads} thread(s), acmix-deploy serve")
    print(f"{'run':>3} {'served/s':>9} {'in-proc/s':>9} {'ratio':>6} {'p50 ms':>7} {'mean batch':>10}")
    for i, r in enumerate(runs, 1):
        mean_b = sum(b * n for b, n in r["batch_histogram"].items()) / max(1, sum(r["batch_histogram"].values()))
        print(f"{i:>3} {r['served']:>9.1f} {r['in_process']:>9.1f} {r['ratio']:>6.3f} {r['p50_ms']:>7.1f} {mean_b:>10.2f}")
    verdict = "PASSED" if summary["ratio_median"] >= 0.8 else "FAILED"
    print(f"{verdict}: served / in-process = {summary['ratio_median']:.3f} (median of {len(runs)}, "
          f"range {summary['ratio_min']:.3f}-{summary['ratio_max']:.3f}; target >= 0.8)")
    print("curve:", ", ".join(f"c={r['concurrency']}: {r['throughput']:.1f}/s p50 {r['p50_ms']:.1f} ms" for r in curve["levels"]))
    print(f"wrote {args.out}/serve_throughput.json, serve_curve.json/.csv/.png")


if __name__ == "__main__":
    main()
