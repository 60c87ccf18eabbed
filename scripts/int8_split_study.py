#!/usr/bin/env python3
"""Which int8 split and calibration method: a study on a trained ACmix-like proxy (CPU, minutes).

Trains tests/tiny_onnx_models.TinyACmixNet (two ACmix bottlenecks) on scikit-learn's digits at
16x16, then quantizes it with every split x method and reports agreement with the fp32 model on
held-out digits (never the calibration ones) in ONNX Runtime:

    python scripts/int8_split_study.py [--steps 300] [--seed 0] [--rest fp16|fp32] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acmix_deploy.precision.fp16 import convert_fp16  # noqa: E402
from acmix_deploy.precision.int8 import METHODS, SPLITS, quantize_int8  # noqa: E402
from tests.tiny_onnx_models import TinyACmixNet, trained_digits  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--calib-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rest", choices=("fp16", "fp32"), default="fp16")
    ap.add_argument("--out", type=Path, default=Path("/tmp/int8-study"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    import torch

    torch.manual_seed(args.seed)
    td = trained_digits(args.out, steps=args.steps, seed=args.seed, model=TinyACmixNet(), size=16)
    print(f"trained {args.steps} steps in {time.time() - t0:.0f} s: fp32 accuracy {td.accuracy:.3f} on 597 held-out digits")
    fp16 = convert_fp16(td.onnx_path, args.out / "fp16.onnx", data=td.heldout_npy, holdout=341, record=False)
    print(fp16.report.line())
    print(f"{'split':13s} {'method':10s} {'top-1 agr':>9s} {'cosine':>9s} {'worst cos':>9s} {'max abs':>8s}  time")
    for split in SPLITS:
        for method in METHODS:
            t = time.time()
            r = quantize_int8(td.onnx_path, args.out / "int8.onnx", calib_data=td.heldout_npy,
                              calib_size=args.calib_size, holdout=341, method=method, split=split,
                              min_agreement=0.0, rest=args.rest, record=False, seed=args.seed)
            rep = r.report
            print(f"{split:13s} {method:10s} {rep.top1_agreement:9.4f} {rep.cosine:9.6f} {rep.min_cosine:9.6f} "
                  f"{rep.max_abs:8.3f}  {time.time() - t:.1f} s", flush=True)


if __name__ == "__main__":
    main()
