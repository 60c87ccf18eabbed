#!/usr/bin/env python3
"""ONNX Runtime CPU latency of PVT-ACmix-T against PVT-T (batch 1, 224 px by default).

    python benchmarks/pvt_latency.py [--threads 2] [--runs 30] [--repeats 3] [--size 224] [--json out.json]

Exports both models (random seeded weights, default export with graph passes, no verification:
`acmix-deploy export` verifies the same deploy form), then, in one process, times the two sessions
interleaved with runners.timing.time_interleaved (every round runs both once, order rotated, garbage
collector off, sessions never spin, fixed intra-op threads). That is repeated --repeats times; each
repeat gives the ratio of the medians. Prints the median ratio over the repeats with its min-max
spread (and the same for process CPU time, which moves less with other processes' load on a shared
machine; the load average is printed at start and end), and an ONNX Runtime profile of pvt_acmix_t by ACmix part (stage I = q, sr + kv; attention;
conv path; rest) and by op type.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.export_latency import export, interleaved, profile_summary  # noqa: E402

PAIR = ("pvt_acmix_t", "pvt_t")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30, help="interleaved rounds per repeat (>= 10)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="independent interleaved repeats (>= 3)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the exported files here (reused by reruns)")
    args = ap.parse_args()
    if args.repeats < 3 or args.runs < 10:
        ap.error("--repeats must be >= 3 and --runs >= 10")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {name: export(name, folder, args.size) for name in PAIR}
        acmix, plain = PAIR
        repeats = []
        for i in range(args.repeats):
            times = interleaved(paths, args.size, args.threads, args.runs, args.warmup)
            a, p = float(np.median(times[acmix])), float(np.median(times[plain]))
            ac, pc = float(np.median(times[acmix + ":cpu"])), float(np.median(times[plain + ":cpu"]))
            repeats.append({"acmix_ms": a, "plain_ms": p, "ratio": a / p, "acmix_cpu_ms": ac, "plain_cpu_ms": pc,
                            "cpu_ratio": ac / pc})
            print(f"repeat {i + 1}: {acmix} {a:.2f} ms, {plain} {p:.2f} ms, ratio {a / p:.3f} "
                  f"(CPU time {ac:.1f} / {pc:.1f} ms, ratio {ac / pc:.3f})")
        ratios = [r["ratio"] for r in repeats]
        cpu_ratios = [r["cpu_ratio"] for r in repeats]
        report = {"pair": list(PAIR), "size": args.size, "threads": args.threads, "runs": args.runs,
                  "repeats": repeats, "ratio_median": float(np.median(ratios)),
                  "ratio_min": min(ratios), "ratio_max": max(ratios), "cpu_ratio_median": float(np.median(cpu_ratios)),
                  "cpu_ratio_min": min(cpu_ratios), "cpu_ratio_max": max(cpu_ratios),
                  "load_average": list(os.getloadavg())}
        print(f"{acmix} / {plain} (ONNX Runtime CPU, batch 1, {args.size} px, {args.threads} threads): "
              f"median ratio {report['ratio_median']:.3f} over {args.repeats} repeats "
              f"(spread {report['ratio_min']:.3f}-{report['ratio_max']:.3f}); process CPU time ratio "
              f"{report['cpu_ratio_median']:.3f} ({report['cpu_ratio_min']:.3f}-{report['cpu_ratio_max']:.3f}); "
              f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        if not args.no_profile:
            prof = profile_summary(paths[acmix], args.size, args.threads)
            report["profile_acmix"] = prof
            parts = ", ".join(f"{k} {v:.0%}" for k, v in prof["part_share"].items())
            ops = ", ".join(f"{k} {v:.0%}" for k, v in list(prof["op_type_share"].items())[:8])
            print(f"profile {acmix}: {prof['total_ms_per_run']:.2f} ms of kernels per run; parts: {parts}")
            print(f"  op types: {ops}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
