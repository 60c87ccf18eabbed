"""Scale check for the graph passes on a ResNet-ACmix-50-shaped stand-in (no torchvision).

Exports tests/passes/_torch_models.MixResNet (layers 3-4-6-3, width 64, 4 heads) with the
TorchScript exporter and with the torch.export-based exporter, runs the default optimize
pipeline on each and prints node counts, parity and the interleaved ORT CPU latency ratio.

    python scripts/optimize_standin.py --size 128 --runs 30 --out /tmp/standin
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acmix_deploy.passes.pipeline import optimize_file  # noqa: E402
from tests.passes._torch_models import MixResNet, export, randomize_bn  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("/tmp/standin"))
    ap.add_argument("--exporters", default="torchscript,dynamo")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = randomize_bn(MixResNet(layers=(3, 4, 6, 3), width=64, num_classes=1000, heads=4))
    for exporter in args.exporters.split(","):
        path = args.out / f"standin_{exporter}.onnx"
        t0 = time.perf_counter()
        export(model, str(path), args.size, dynamo=exporter == "dynamo", opset=18 if exporter == "dynamo" else 17)
        print(f"[{exporter}] exported in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        r = optimize_file(path, latency_runs=args.runs, threads=args.threads)
        print(f"[{exporter}] optimized in {time.perf_counter() - t0:.1f} s "
              f"(passes: {', '.join(f'{p.name} {p.seconds:.1f}s' for p in r.passes)})")
        print(f"[{exporter}] nodes {r.nodes_before} -> {r.nodes_after}, Conv {r.conv_before} -> {r.conv_after}, "
              f"BatchNormalization {r.ops_before.get('BatchNormalization', 0)} -> {r.ops_after.get('BatchNormalization', 0)}, "
              f"Mul {r.ops_before.get('Mul', 0)} -> {r.ops_after.get('Mul', 0)}, Split {r.ops_after.get('Split', 0)}, "
              f"size {r.bytes_before / 2**20:.1f} -> {r.bytes_after / 2**20:.1f} MiB")
        for line in r.parity:
            print(f"[{exporter}] {line}")
        lat = r.latency
        print(f"[{exporter}] ORT CPU {lat.before_ms:.1f} ms -> {lat.after_ms:.1f} ms, ratio {lat.ratio:.3f} "
              f"(median of {lat.runs} alternated pairs)")


if __name__ == "__main__":
    main()
