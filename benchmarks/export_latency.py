#!/usr/bin/env python3
"""ONNX Runtime CPU latency of exported ACmix models against their plain baselines.

    python benchmarks/export_latency.py [--threads 2] [--runs 30] [--size 224] [--json out.json]

1. Times `export_onnx("resnet_acmix50")` with verification (the export-time target: <= 60 s on 2 cores).
2. Exports every pair (resnet_acmix26/38/50 vs resnet26/38/50, swin_acmix_t vs swin_t) at batch 1
   and, in a fresh process that only loads the files (steps 2-4), times each pair interleaved on its
   own (runners.timing.time_interleaved): every round runs the two sessions once each, in an order
   rotated each round, garbage collector off; sessions never spin
   (session.intra_op.allow_spinning = 0, DESIGN.md section 4), fixed intra-op threads; medians of the
   rounds after warm-up, and the quartiles of the per-round ratios (how much the machine moved).
3. Times the eager PyTorch reference forward of resnet_acmix50 against its ONNX file in ONNX Runtime,
   interleaved the same way (same threads, same input, OMP_WAIT_POLICY=PASSIVE unless set).
4. Compares the ResNet-ACmix-50 conv-path forms (split / grouped / dense; the pairs use the export's
   default) and profiles the default exports of resnet_acmix50 and swin_acmix_t with ONNX Runtime's
   profiler: shares by op type and by ACmix part (stage I, attention, conv path, rest), mapped back
   through ONNX Runtime's fused names.

Random-init weights (the latency does not depend on them). Files go to a temporary folder, or to
--workdir, where a rerun reuses them.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Idle OpenMP threads of eager PyTorch must not spin either (the ONNX Runtime sessions are created with
# spinning off): on a shared 2-core machine a spinning 2-thread team made the eager reference 10x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PAIRS = [("resnet_acmix50", "resnet50"), ("swin_acmix_t", "swin_t"), ("resnet_acmix26", "resnet26"),
         ("resnet_acmix38", "resnet38")]
CONV_FORMS = ("split", "grouped", "dense")


def export(name: str, folder: Path, size: int, **kwargs) -> Path:
    from acmix_deploy.export import export_onnx

    tag = "_".join(f"{v}" for v in (kwargs.get("deploy_options") or {}).values())
    out = folder / f"{name}{'_' + tag if tag else ''}.onnx"
    if not out.exists():
        export_onnx(name, img_size=size, output=out, verify=False, **kwargs)
    return out


def interleaved(paths: dict[str, Path], size: int, threads: int, runs: int, warmup: int) -> dict[str, list[float]]:
    """Per label, `runs` wall times (ms) from runners.timing.time_interleaved: each round runs every
    session once, the order rotated each round, the garbage collector off.

    CPU times (process time, all threads) go to `label + ":cpu"`: on a shared machine they move less
    with other processes' load than wall times do.
    """
    from acmix_deploy.runners.timing import Budget, Timed, time_interleaved
    from acmix_deploy.runners.ort import make_session

    sessions = {k: make_session(str(p), threads=threads, spinning=False) for k, p in paths.items()}
    x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    cpu: dict[str, list[float]] = {k: [] for k in sessions}

    def timed(label: str, call: Callable[[], object]) -> Timed:
        def fn() -> None:
            c = time.process_time()
            call()
            cpu[label].append((time.process_time() - c) * 1e3)

        return Timed(fn=fn)

    items = [timed(k, functools.partial(s.run, None, {s.get_inputs()[0].name: x})) for k, s in sessions.items()]
    samples = time_interleaved(items, Budget(iterations=warmup), Budget(iterations=runs))
    times = {k: list(v) for k, v in zip(sessions, samples)}
    times.update({f"{k}:cpu": cpu[k][-runs:] for k in sessions})  # the warm-up calls were recorded first
    return times


def eager_vs_ort(name: str, onnx_path: Path, size: int, threads: int, runs: int) -> tuple[list[float], list[float]]:
    """Eager PyTorch reference forward and the ONNX file in ONNX Runtime, interleaved through
    runners.timing.time_interleaved (same threads, same input), so both see the same machine load."""
    import torch

    from acmix_deploy.runners.timing import Budget, Timed, time_interleaved
    from acmix_deploy.export import reference_and_deploy
    from acmix_deploy.runners.ort import make_session

    torch.set_num_threads(threads)
    # the reference export_onnx verified against: seeded random weights with settled BatchNorm (an
    # unsettled random ResNet overflows to huge activations and denormals, which slow eager PyTorch)
    model = reference_and_deploy(name, build={"img_size": size})[0]
    session = make_session(str(onnx_path), threads=threads, spinning=False)
    x = torch.randn(1, 3, size, size)
    feed = {session.get_inputs()[0].name: x.numpy()}
    with torch.no_grad():
        eager, ort = time_interleaved(
            [Timed(fn=functools.partial(model, x)), Timed(fn=functools.partial(session.run, None, feed))],
            Budget(iterations=1), Budget(iterations=runs),
        )
    return list(eager), list(ort)


def profile_summary(path: Path, size: int, threads: int, runs: int = 20, warmup: int = 5) -> dict:
    """ONNX Runtime profiler shares by op type and by ACmix part (stage1, attention, conv, rest), from
    the bench package's profiler (`acmix-deploy profile`): the same node-name mapping and classifier."""
    from acmix_deploy.bench.profile import profile_onnxruntime

    result = profile_onnxruntime(path, 1, (size, size), warmup, runs, threads)
    total = result.kernel_ms
    parts = sorted(result.totals().items(), key=lambda kv: -kv[1])
    return {
        "total_ms_per_run": total,
        "op_type_share": {o["op"]: o["ms"] / total for o in result.op_types()},
        "part_share": {k: v / total for k, v in parts},
    }


def median(values: list[float]) -> float:
    return float(np.median(values))


def measure(spec: dict) -> dict:
    """All timings, in a process that has done nothing but load ONNX files (no exporter threads or
    allocator state from the exports): forms, pairs, eager vs ORT, profile."""
    size, threads, runs, warmup = spec["size"], spec["threads"], spec["runs"], spec["warmup"]
    forms = {k: Path(v) for k, v in spec["forms"].items()}
    pairs = {k: Path(v) for k, v in spec["pairs"].items()}
    out: dict = {}
    form_times = interleaved(forms, size, threads, runs, warmup)
    out["forms"] = {k: [median(form_times[k]), median(form_times[k + ":cpu"])] for k in forms}
    # each pair alternates on its own: a ratio's two models run back to back with no third model's
    # sessions (and memory) in between; per-round ratios show how much the machine moved
    out["pairs"], out["round_ratios"] = {}, {}
    for acmix, plain in spec["pair_names"]:
        times = interleaved({acmix: pairs[acmix], plain: pairs[plain]}, size, threads, runs, warmup)
        for k in (acmix, plain):
            out["pairs"][k] = [median(times[k]), median(times[k + ":cpu"])]
        per_round = np.array(times[acmix]) / np.array(times[plain])
        out["round_ratios"][acmix] = [float(np.percentile(per_round, q)) for q in (25, 50, 75)]
    eager, ort = eager_vs_ort("resnet_acmix50", pairs["resnet_acmix50"], size, threads, spec["eager_runs"])
    out["eager_ms"], out["eager_ort_ms"] = median(eager), median(ort)
    out["profile"] = profile_summary(pairs["resnet_acmix50"], size, threads)
    out["profile_swin"] = profile_summary(pairs["swin_acmix_t"], size, threads)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30, help="interleaved rounds (>= 20)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--eager-runs", type=int, default=10)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--skip-export-timing", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the exported files here (reused by reruns)")
    ap.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)  # internal: child process
    args = ap.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(json.loads(args.measure.read_text()))))
        return
    if args.runs < 20:
        ap.error("--runs must be >= 20")
    import subprocess

    import onnxruntime
    import torch

    from acmix_deploy.export import export_onnx
    from acmix_deploy.nn.deploy import DEFAULT_CONV_FORM

    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} CPUs)")
    report: dict = {"threads": args.threads, "runs": args.runs, "size": args.size, "loadavg_start": os.getloadavg(),
                    "onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if not args.skip_export_timing:
            t0 = time.perf_counter()
            result = export_onnx("resnet_acmix50", img_size=args.size, output=folder / "timed_resnet_acmix50.onnx")
            report["export_seconds_resnet_acmix50"] = time.perf_counter() - t0
            report["export_parity"] = result.parity
            print(f"export resnet_acmix50 incl. verification: {report['export_seconds_resnet_acmix50']:.1f} s")
            for line in result.parity:
                print("  " + line)

        forms = {f"resnet_acmix50[{f}]": export("resnet_acmix50", folder, args.size, deploy_options={"conv_form": f})
                 for f in CONV_FORMS}
        forms["resnet50"] = export("resnet50", folder, args.size)
        pairs = {}  # what `acmix-deploy export` writes by default
        for acmix, plain in PAIRS:
            pairs[acmix] = export(acmix, folder, args.size)
            pairs[plain] = export(plain, folder, args.size)
        spec = {"size": args.size, "threads": args.threads, "runs": args.runs, "warmup": args.warmup,
                "eager_runs": args.eager_runs, "forms": {k: str(v) for k, v in forms.items()},
                "pairs": {k: str(v) for k, v in pairs.items()}, "pair_names": PAIRS}
        spec_path = folder / "measure_spec.json"
        spec_path.write_text(json.dumps(spec))
        child = subprocess.run([sys.executable, __file__, "--measure", str(spec_path)], capture_output=True,
                               text=True, check=False)
        if child.returncode != 0:
            sys.exit(f"measurement process failed:\n{child.stderr[-2000:]}")
        m = json.loads(child.stdout.strip().splitlines()[-1])

    base, base_cpu = m["forms"]["resnet50"]
    print(f"\nResNet-ACmix-50 conv-path forms (ORT CPU, {args.threads} threads, median of {args.runs}):")
    for k, (v, c) in m["forms"].items():
        print(f"  {k:26s} {v:8.2f} ms  x{v / base:.2f} of resnet50   (CPU time x{c / base_cpu:.2f})")
    best_form = min(CONV_FORMS, key=lambda f: m["forms"][f"resnet_acmix50[{f}]"][0])
    report["conv_forms_ms"] = {k: v[0] for k, v in m["forms"].items()}
    report["fastest_conv_form_this_run"] = best_form
    report["default_conv_form"] = DEFAULT_CONV_FORM
    print(f"  fastest this run: {best_form}; the export default is {DEFAULT_CONV_FORM}")

    report["ort_ms"] = {k: v[0] for k, v in m["pairs"].items()}
    print(f"\nORT CPU latency, batch 1, {args.size} px, {args.threads} threads, no spinning, "
          f"median of {args.runs} rounds, each pair interleaved on its own:")
    print(f"  {'model':16s} {'ms':>8s}   {'baseline':10s} {'ms':>8s}   ratio   (CPU-time ratio)"
          "   per-round ratio p25-p75")
    ratios, cpu_ratios = {}, {}
    for acmix, plain in PAIRS:
        (a, ac), (b, bc) = m["pairs"][acmix], m["pairs"][plain]
        ratios[f"{acmix}/{plain}"], cpu_ratios[f"{acmix}/{plain}"] = a / b, ac / bc
        lo, _, hi = m["round_ratios"][acmix]
        print(f"  {acmix:16s} {a:8.2f}   {plain:10s} {b:8.2f}   {a / b:.2f}    ({ac / bc:.2f})"
              f"             {lo:.2f}-{hi:.2f}")
    report["ratios"], report["cpu_time_ratios"] = ratios, cpu_ratios
    report["round_ratio_quartiles"] = m["round_ratios"]

    speedup = m["eager_ms"] / m["eager_ort_ms"]
    report["eager_reference_ms"], report["ort_vs_eager_speedup"] = m["eager_ms"], speedup
    print(f"\nresnet_acmix50 eager PyTorch reference {m['eager_ms']:.1f} ms vs ORT {m['eager_ort_ms']:.2f} ms "
          f"(medians of {args.eager_runs} interleaved rounds) -> ORT {speedup:.1f}x faster")

    print("\nThe three ratios:")
    print(f"  resnet_acmix50 / resnet50 (ORT CPU): {ratios['resnet_acmix50/resnet50']:.2f}")
    print(f"  swin_acmix_t / swin_t (ORT CPU):     {ratios['swin_acmix_t/swin_t']:.2f}")
    print(f"  eager reference / ORT resnet_acmix50: {speedup:.1f}x")

    prof = report["profile_resnet_acmix50"] = m["profile"]
    print(f"\nProfile of resnet_acmix50 (default export, conv form {DEFAULT_CONV_FORM}), "
          f"{prof['total_ms_per_run']:.1f} ms of kernels/run:")
    print("  by part:  " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in prof["part_share"].items()))
    print("  by op:    " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in list(prof["op_type_share"].items())[:10]))
    prof = report["profile_swin_acmix_t"] = m["profile_swin"]
    print(f"\nProfile of swin_acmix_t (default export), {prof['total_ms_per_run']:.1f} ms of kernels/run:")
    print("  by part:  " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in prof["part_share"].items()))
    print("  by op:    " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in list(prof["op_type_share"].items())[:10]))
    report["loadavg_end"] = os.getloadavg()
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in report['loadavg_end'])}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
