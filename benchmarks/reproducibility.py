#!/usr/bin/env python3
"""Check that baseline ratios reproduce: run the same bench N times, compare ratios per row.

    python benchmarks/reproducibility.py --model resnet_acmix50 --baseline resnet50 \
        --backend onnxruntime --batch 1,4 --runs 2

Ratios are stable because the model and the baseline are timed interleaved in one process (the
same background load hits both rounds' samples, and the ratio is the median of per-round ratios),
ONNX Runtime spinning is off (two sessions do not steal each other's cores), the thread count is
fixed, and this script starts torch with OMP_WAIT_POLICY=PASSIVE (spinning OpenMP threads make torch
timings erratic on a loaded machine). Exit status 1 when any row's ratios differ by more than
--tolerance (default 10 %) between runs (max/min - 1).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch timings on shared machines (before torch loads)

from acmix_deploy.bench.run import bench  # noqa: E402
from acmix_deploy.errors import AcmixError  # noqa: E402


def spread(ratios: list[float]) -> float:
    """max / min - 1 over the runs' ratios of one row."""
    return max(ratios) / min(ratios) - 1.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--backend", action="append", default=None)
    ap.add_argument("--batch", default="1")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--duration-s", type=float, default=10.0)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--img-size", type=int)
    ap.add_argument("--tolerance", type=float, default=0.10)
    args = ap.parse_args(argv)
    ratios: dict[tuple[str, int], list[float]] = {}
    try:
        for i in range(args.runs):
            result = bench(
                model=args.model, baseline=args.baseline, backends=args.backend,
                batches=[int(b) for b in args.batch.split(",")], duration_s=args.duration_s,
                threads=args.threads, img_size=args.img_size, memory=False,
            )  # fmt: skip
            for row in result.rows:
                if row.role == "model" and row.ratio is not None:
                    ratios.setdefault((row.backend, row.batch), []).append(row.ratio)
                    print(f"run {i + 1}: {row.backend} batch {row.batch}: ratio {row.ratio:.3f} "
                          f"(of medians {row.median_ratio:.3f}, CV {row.stats.cv:.1%})")  # fmt: skip
    except AcmixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    worst = 0.0
    for (backend, batch), values in ratios.items():
        s = spread(values)
        worst = max(worst, s)
        print(f"{backend} batch {batch}: ratios {', '.join(f'{v:.3f}' for v in values)}; spread {s:.1%}")
    ok = bool(ratios) and worst <= args.tolerance
    print(("PASSED" if ok else "FAILED") + f": largest spread {worst:.1%} (limit {args.tolerance:.0%})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
