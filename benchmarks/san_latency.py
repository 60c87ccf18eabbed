#!/usr/bin/env python3
"""ONNX Runtime CPU latency of SAN-ACmix-10 against SAN-10, and of our SAN-10 export against an export of
SAN's own unfold formulation of the same weights.

    python benchmarks/san_latency.py [--threads 2] [--rounds 15] [--repeats 3] [--size 224] [--workdir DIR]

1. Exports (random init, seed 0, settled BatchNorm, as `acmix-deploy export` does): san10 and san_acmix10 in
   the default deploy form (`slices`), with --gather san10 in the `gather` form too, and the *reference* san10 module as it
   is (ReflectionPad2d + Unfold, SAN's own formulation; the exporter lowers Unfold to Gathers) with the
   same weights. Every file is checked against the PyTorch reference before it is timed.
2. Times them in one process, interleaved (runners.timing.time_interleaved: each round runs every session
   once, order rotated, garbage collector off, sessions never spin), batch 1, fixed intra-op threads;
   `--repeats` independent runs of `--rounds` rounds each. Prints each run's medians, the median of the
   runs and the spread (min - max) of the per-run ratios.
3. Prints the largest intermediate tensors of one SAN-ACmix block (layer1.0.sam, the 56 x 56 stage) from
   ONNX shape inference, and the node count per block part.
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


def export_all(folder: Path, size: int, gather: bool) -> dict[str, Path]:
    """label -> verified ONNX file (reused when present in the folder)."""
    from acmix_deploy.export import export_onnx, reference_and_deploy, to_onnx_proto, verify_model

    jobs = {"san10": ("san10", {}), "san_acmix10": ("san_acmix10", {})}
    if gather:
        jobs["san10_gather"] = ("san10", {"san_form": "gather"})
    out = {}
    for label, (name, options) in jobs.items():
        path = folder / f"{label}_{size}.onnx"
        if not path.exists():
            export_onnx(name, img_size=size, output=path, deploy_options=options or None)
        out[label] = path
    path = folder / f"san10_unfold_{size}.onnx"
    if not path.exists():  # SAN's own formulation: the reference module, exported without a deploy form
        reference, _, _ = reference_and_deploy("san10", build={"img_size": size})
        proto = to_onnx_proto(reference, size)
        data = proto.SerializeToString()
        results = verify_model(reference, data, reference.card, size, 1, False)
        if not all(r.passed for r in results):
            raise SystemExit(f"unfold export failed verification: {[r.line() for r in results]}")
        path.write_bytes(data)
    out["san10_unfold"] = path
    return out


def time_runs(paths: dict[str, Path], size: int, threads: int, rounds: int, repeats: int) -> dict[str, list[float]]:
    """label -> per-run median ms (each run interleaves all sessions)."""
    from acmix_deploy.runners.timing import Budget, Timed, time_interleaved
    from acmix_deploy.runners.ort import make_session

    sessions = {k: make_session(str(p), threads=threads, spinning=False) for k, p in paths.items()}
    feed = {"images": np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)}
    labels = list(sessions)
    items = [Timed(fn=lambda s=sessions[k]: s.run(None, feed)) for k in labels]
    medians: dict[str, list[float]] = {k: [] for k in labels}
    for run in range(repeats):
        samples = time_interleaved(items, Budget(iterations=3 if run == 0 else 1), Budget(iterations=rounds))
        for k, s in zip(labels, samples):
            medians[k].append(float(np.median(s)))
        print("run", run + 1, "  ".join(f"{k} {medians[k][-1]:.1f} ms" for k in labels), flush=True)
    return medians


def block_tensors(path: Path, block: str = "layer1.0.sam", top: int = 4) -> list[tuple[str, list[int], int]]:
    """(tensor, shape, elements) of the largest intermediates produced by the block's nodes."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    rows = []
    for node in model.graph.node:
        if not node.name.startswith(block + ".") and not node.name.startswith(block + "/"):
            continue
        for out in node.output:
            if out in shapes and all(shapes[out]):
                rows.append((f"{node.name} -> {out}", shapes[out], int(np.prod(shapes[out]))))
    return sorted(rows, key=lambda r: -r[2])[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--gather", action="store_true", help="also time san10 in the gather deploy form")
    args = ap.parse_args()
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="san_latency_"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = export_all(folder, args.size, args.gather)
    medians = time_runs(paths, args.size, args.threads, args.rounds, args.repeats)
    ratios = {
        "san_acmix10 / san10": [a / b for a, b in zip(medians["san_acmix10"], medians["san10"])],
        "san10 unfold export / san10 ours": [a / b for a, b in zip(medians["san10_unfold"], medians["san10"])],
    }
    if args.gather:
        ratios["san10 gather form / slices form"] = [a / b for a, b in zip(medians["san10_gather"], medians["san10"])]
    print(f"\nONNX Runtime CPU, batch 1, {args.size} px, {args.threads} threads, {args.repeats} runs x "
          f"{args.rounds} interleaved rounds")
    for k, v in medians.items():
        print(f"  {k:14s} median of runs {np.median(v):8.1f} ms  (runs: {', '.join(f'{x:.1f}' for x in v)})")
    for k, v in ratios.items():
        print(f"  {k:34s} {np.median(v):.3f}  (spread {min(v):.3f} - {max(v):.3f})")
    print("\nlargest intermediates of layer1.0.sam (56 x 56, rel 16, mid 64, K 7), ONNX shape inference:")
    for label in [k for k in ("san_acmix10", "san10_gather", "san10_unfold") if k in paths]:
        for name, shape, n in block_tensors(paths[label])[:2]:
            print(f"  {label:13s} {n * 4 / 2**20:6.1f} MiB {shape} {name}")
    if args.json:
        args.json.write_text(json.dumps({"medians_ms": medians, "ratios": ratios}, indent=2) + "\n")


if __name__ == "__main__":
    main()
