#!/usr/bin/env python3
"""Produce the README performance table: run the benchmark cases, save each as JSON, render markdown.

    python benchmarks/readme_table.py                     # CPU cases, 10 s per cell
    python benchmarks/readme_table.py --gpu               # adds GPU backends (onnxruntime-cuda, -trt ...)
    python benchmarks/readme_table.py --quick             # 2 s per cell, to check the pipeline
    python benchmarks/readme_table.py --render-only       # re-render from the saved JSON files
    python benchmarks/readme_table.py --only resnet50     # cases whose name contains "resnet50"

JSON results go to out/benchmarks/<case>.json (one versioned bench document each); the markdown
goes to stdout and, with --markdown FILE, to that file. Every number in the table comes with the
exact `acmix-deploy bench` command that reproduces it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch timings on shared machines (before torch loads)

from acmix_deploy.bench.markdown import render_markdown  # noqa: E402
from acmix_deploy.bench.report import load_json, write_json  # noqa: E402
from acmix_deploy.bench.run import bench  # noqa: E402
from acmix_deploy.errors import AcmixError  # noqa: E402

CPU_BACKENDS = ["onnxruntime", "torch-eager"]
# every case starts from a model name, so TensorRT runs through ONNX Runtime's TensorRT provider; the
# `tensorrt` backend times a built engine (`acmix-deploy bench --engine F` after `build-trt`)
GPU_BACKENDS = ["onnxruntime-cuda", "onnxruntime-trt", "torch-eager"]

# name -> bench() arguments. The headline is ResNet-ACmix-50 against ResNet-50; the shift case
# reproduces the paper's Table 7 comparison (tensor shifts vs the grouped-conv shift).
CASES: dict[str, dict] = {
    "resnet_acmix50-vs-resnet50": {"model": "resnet_acmix50", "baseline": "resnet50"},
    "resnet_acmix38-vs-resnet38": {"model": "resnet_acmix38", "baseline": "resnet38"},
    "resnet_acmix26-vs-resnet26": {"model": "resnet_acmix26", "baseline": "resnet26"},
    "swin_acmix_t-vs-swin_t": {"model": "swin_acmix_t", "baseline": "swin_t"},
    "resnet_acmix50-shift-tensor-vs-group": {"model": "resnet_acmix50", "shift": "tensor", "baseline": "resnet_acmix50"},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/benchmarks"), help="folder for the JSON results")
    ap.add_argument("--markdown", type=Path, help="also write the markdown table here")
    ap.add_argument("--gpu", action="store_true", help="bench the GPU backends instead of the CPU ones")
    ap.add_argument("--batch", default="1,8", help="batch sizes (default 1,8)")
    ap.add_argument("--duration-s", type=float, default=10.0, help="timed seconds per backend and batch")
    ap.add_argument("--quick", action="store_true", help="2 s per cell and 1 s warm-up, no memory")
    ap.add_argument("--threads", type=int, help="intra-op threads (default: all usable CPUs)")
    ap.add_argument("--only", help="run only cases whose name contains this text")
    ap.add_argument("--render-only", action="store_true", help="render the saved JSON files, run nothing")
    args = ap.parse_args(argv)

    cases = {k: v for k, v in CASES.items() if not args.only or args.only in k}
    if not cases:
        print(f"no case matches {args.only!r}; cases: {', '.join(CASES)}", file=sys.stderr)
        return 2
    batches = [int(b) for b in args.batch.split(",") if b.strip()]
    docs = []
    try:
        for name, kwargs in cases.items():
            path = args.out / f"{name}.json"
            if not args.render_only:
                print(f"== {name}", file=sys.stderr)
                result = bench(
                    backends=GPU_BACKENDS if args.gpu else CPU_BACKENDS,
                    batches=batches,
                    warmup_s=1.0 if args.quick else 2.0,
                    duration_s=2.0 if args.quick else args.duration_s,
                    threads=args.threads,
                    memory=not args.quick,
                    progress=lambda msg: print(f"   {msg}", file=sys.stderr),
                    **kwargs,
                )
                write_json(result, path)
            if path.exists():
                docs.append(load_json(path))
    except AcmixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not docs:
        print(f"no results in {args.out}; run without --render-only first", file=sys.stderr)
        return 2
    text = render_markdown(docs)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
