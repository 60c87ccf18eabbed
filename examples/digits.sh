#!/usr/bin/env bash
# End to end on real data, CPU only, no download: scikit-learn's handwritten digits ->
# train a small ResNet-ACmix -> ONNX -> optimized ONNX -> fp16 and int8 ONNX -> accuracy of all five.
#
#   examples/digits.sh [OUT]                     (OUT defaults to out/digits)
#   ACMIX="python cli.py" examples/digits.sh     (from a checkout without installing)
#   FORM=reference examples/digits.sh            (train the reference ACmix block form instead of fast)
#
# Takes about 2-3 minutes on 2 CPU cores (106 s and about 3 minutes measured on the development
# VM), most of it training. Exits non-zero if an acceptance check fails: the checkpoint reaches 97%
# val top-1, the fp32 artifacts pick the same class as the checkpoint on every val image, fp16
# differs on at most 1 image, int8 agrees on >= 98% and is within 4 images of its accuracy.
set -euo pipefail

OUT="${1:-out/digits}"
ACMIX="${ACMIX:-acmix-deploy}"
PYTHON="${PYTHON:-python}"
FORM="${FORM:-fast}"
mkdir -p "$OUT"
rm -rf -- "$OUT/run"
step() { printf '\n== %s (%ds elapsed)\n' "$1" "$SECONDS"; }

step "data: 1,437 train / 360 val digits as 32x32 PNG, plus the train images as calibration array"
$ACMIX data digits "$OUT/data" --npy "$OUT/calib.npy" --force

step "train: ResNet-ACmix-26, width 16, 3x3 attention windows, 32 px, 20 epochs"
# --threads 1 --workers 1: one core computes, one decodes images (faster than 2 compute threads
# for a model this small, and robust on a busy machine); --no-hflip: mirrored digits are not digits.
$ACMIX train --model resnet_acmix26 --width 16 --k-att 3 --img-size 32 --data "$OUT/data" \
  --epochs 20 --lr 0.1 --warmup-epochs 2 --min-scale 0.6 --no-hflip \
  --form "$FORM" --threads 1 --workers 1 --no-progress -o "$OUT/run"

step "export, optimize, fp16, int8 (calibrated on train images)"
$ACMIX export --checkpoint "$OUT/run/best.pth" --no-optimize -o "$OUT/model.onnx"
$ACMIX optimize "$OUT/model.onnx" -o "$OUT/model.opt.onnx"
$ACMIX convert-fp16 "$OUT/model.opt.onnx" -o "$OUT/model.fp16.onnx"
$ACMIX quantize-int8 "$OUT/model.opt.onnx" --calib-data "$OUT/calib.npy" -o "$OUT/model.int8.onnx"

step "eval: the same 360 val images through each artifact (reference: the PyTorch checkpoint)"
$ACMIX eval --data "$OUT/data" --threads 1 -o "$OUT/eval.json" \
  "$OUT/run/best.pth" "$OUT/model.onnx" "$OUT/model.opt.onnx" "$OUT/model.fp16.onnx" "$OUT/model.int8.onnx"

step "acceptance checks"
"$PYTHON" - "$OUT/eval.json" <<'PY'
import json, sys

report = json.load(open(sys.argv[1]))
n = report["evaluated"]
ref, onnx, opt, fp16, int8 = report["artifacts"]
checks = [
    ("checkpoint val top-1 >= 97%", ref["top1"] >= 97.0, f"{ref['top1']:.2f}%"),
    ("ONNX agrees on every image", onnx["disagree"] == 0, f"{onnx['disagree']} differ"),
    ("optimized ONNX agrees on every image", opt["disagree"] == 0, f"{opt['disagree']} differ"),
    ("fp16 differs on at most 1 image", fp16["disagree"] <= 1, f"{fp16['disagree']} differ"),
    ("int8 top-1 agreement >= 98%", int8["top1_agreement"] >= 0.98, f"{100 * int8['top1_agreement']:.2f}%"),
    ("int8 within 4 images of fp32", abs(int8["delta_correct1"]) <= 4, f"{int8['delta_correct1']:+d} images"),
]
for name, ok, value in checks:
    print(f"{'PASSED' if ok else 'FAILED'} {name}: {value} (of {n} images)")
sys.exit(0 if all(ok for _, ok, _ in checks) else 1)
PY
printf '\ndone in %ds\n' "$SECONDS"
