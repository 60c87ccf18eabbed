#!/usr/bin/env python3
"""Training-step speed and memory of ResNet-ACmix: reference form vs fast form vs the plain ResNet.

    python benchmarks/train_speed.py [--cases resnet_acmix26@128,...] [--batch 8] [--threads 2]
                                     [--rounds 3] [--heavy] [--compile] [--width W] [--k-att K] [--json out.json]

For every case (model @ px): the reference form (official maths, nn/acmix.py), the fast training form
(nn/acmix_train.py) and the plain ResNet of the same depth (resnet26 / resnet50), same batch, random
weights and inputs, SGD (Nesterov momentum) with weight decay:

* speed: images/s of a whole training step (forward, cross-entropy, backward, optimizer step), all
  variants in one process, interleaved round by round (order rotated each round) after one warm-up
  step each; median of the rounds with the min-max spread, and the fast/reference speed-up as the
  median (and range) of the per-round ratios;
* memory: the step's peak as the increase over the pre-step resident set, in a fresh child process
  per variant that builds the model, optimizer and batch and runs one step (VmHWM - VmRSS before);
  on CUDA: max_memory_allocated during the step minus memory_allocated before it.

resnet_acmix50 @ 224 in the reference form needs many GB and minutes per step: only with --heavy.
--compile adds torch.compile of the fast form (CPU needs a C++ compiler; compiling takes minutes).
With a CUDA GPU the same cases also run on it with AMP (bf16, else fp16); without one that part is
skipped with its reason. OMP_WAIT_POLICY=PASSIVE unless set (spinning idle threads make interleaved
timings erratic on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_CASES = "resnet_acmix26@128,resnet_acmix26@224,resnet_acmix50@128,resnet_acmix50@224"
HEAVY = {("resnet_acmix50", 224)}  # reference form only with --heavy


def cuda_skip_reason() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False)"
    return None


def build(variant: str, model: str, size: int, device: str, overrides: dict | None = None):
    """(model, optimizer) of one variant: 'reference', 'fast', 'fast+compile' or 'plain'; `overrides`
    (width, k_att) apply to the ACmix model and width to its plain baseline."""
    import torch

    from acmix_deploy.nn.acmix_train import to_form
    from acmix_deploy.registry import create_model

    torch.manual_seed(0)
    name = model.replace("_acmix", "") if variant == "plain" else model
    overrides = dict(overrides or {})
    if variant == "plain":
        overrides.pop("k_att", None)
    net = create_model(name, img_size=size, **overrides)
    if variant != "plain":
        to_form(net, "reference" if variant == "reference" else "fast")
    net = net.to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-5)
    if variant.endswith("+compile"):
        net = torch.compile(net, dynamic=False)
    return net, opt


def make_step(net, opt, batch: int, size: int, device: str, amp: bool):
    """A closure running one training step on a fixed random batch; returns its wall time (s)."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, size, size, generator=gen).to(device)
    y = torch.randint(0, 1000, (batch,), generator=gen).to(device)
    cuda = device == "cuda"
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda and amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    def step() -> float:
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    return step


def child_memory(spec: dict) -> dict:
    """In a fresh process: one step's peak memory over the pre-step level."""
    import gc

    import torch

    from acmix_deploy.bench.memory import current_rss_mb, peak_rss_mb

    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    net, opt = build(spec["variant"], spec["model"], spec["size"], device, spec.get("overrides"))
    step = make_step(net, opt, spec["batch"], spec["size"], device, spec["amp"])
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        return {"peak_mb": (torch.cuda.max_memory_allocated() - before) / 2**20, "method": "cuda max_allocated"}
    before = current_rss_mb()
    step()
    return {"peak_mb": peak_rss_mb() - before, "method": "VmHWM - pre-step VmRSS"}


def measure_memory(spec: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        return {"peak_mb": None, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_interleaved(steps: dict, rounds: int) -> dict[str, list[float]]:
    """One warm-up step each, then `rounds` rounds of one step per variant, order rotated each round."""
    names = list(steps)
    for n in names:
        steps[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[: r % len(names)]:
            times[n].append(steps[n]())
    return times


def run_case(model: str, size: int, args, device: str, amp: bool) -> dict:
    import torch

    variants = ["reference", "fast", "plain"]
    if (model, size) in HEAVY and not args.heavy:
        variants.remove("reference")
    if args.compile:
        variants.insert(2, "fast+compile")
    steps = {}
    for v in variants:
        net, opt = build(v, model, size, device, args.overrides)
        steps[v] = make_step(net, opt, args.batch, size, device, amp)
    times = time_interleaved(steps, args.rounds)
    del steps
    if device == "cuda":
        torch.cuda.empty_cache()
    rows = {}
    for v in variants:
        ips = [args.batch / t for t in times[v]]
        spec = {"variant": v, "model": model, "size": size, "batch": args.batch, "threads": args.threads,
                "device": device, "amp": amp, "overrides": args.overrides}
        rows[v] = {"images_per_s": statistics.median(ips), "ips_min": min(ips), "ips_max": max(ips),
                   "step_s": times[v], "memory": measure_memory(spec)}
    for v in variants:
        for base in ("reference", "plain"):
            if base in times and base != v:
                per_round = [b / t for t, b in zip(times[v], times[base])]  # speed-up over base, per round
                rows[v][f"speedup_vs_{base}"] = statistics.median(per_round)
                rows[v][f"speedup_vs_{base}_range"] = [min(per_round), max(per_round)]
    return {"model": model, "size": size, "batch": args.batch, "device": device, "amp": amp, "variants": rows}


def fmt_case(case: dict) -> list[str]:
    lines = []
    rows = case["variants"]
    for v, r in rows.items():
        mem = r["memory"].get("peak_mb")
        ref_mem = rows.get("reference", {}).get("memory", {}).get("peak_mb")
        mem_s = "-" if mem is None else f"{mem:,.0f} MB"
        if mem is not None and ref_mem and v != "reference":
            mem_s += f" ({mem / ref_mem:.2f}x ref)"
        vs_ref = r.get("speedup_vs_reference")
        vs_ref_s = "-" if vs_ref is None else f"{vs_ref:.2f}x ({r['speedup_vs_reference_range'][0]:.2f}-" \
                                              f"{r['speedup_vs_reference_range'][1]:.2f})"
        vs_plain = r.get("speedup_vs_plain")
        vs_plain_s = "-" if vs_plain is None else f"{1 / vs_plain:.2f}x"  # step time relative to plain
        lines.append(
            f"| {case['model']} @ {case['size']} | {case['device']}{' amp' if case['amp'] else ''} | {v} | "
            f"{r['images_per_s']:.2f} ({r['ips_min']:.2f}-{r['ips_max']:.2f}) | {vs_ref_s} | {vs_plain_s} | {mem_s} |"
        )
    return lines


HEADER = [
    "| case | device | variant | images/s median (min-max) | speed-up vs reference, per-round median (range) "
    "| step time / plain ResNet | step peak memory |",
    "|---|---|---|---|---|---|---|",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=DEFAULT_CASES, help="model@px, comma separated")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--heavy", action="store_true", help="also time resnet_acmix50 @ 224 in the reference form")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the fast form")
    ap.add_argument("--no-cuda", action="store_true", help="skip the CUDA + AMP part even with a GPU")
    ap.add_argument("--width", type=int, help="model width override (e.g. 16 for the digits model)")
    ap.add_argument("--k-att", type=int, help="attention window override (e.g. 3 for the digits model)")
    ap.add_argument("--json", type=Path, help="write all numbers here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child_memory(json.loads(args.child))))
        return
    import torch

    args.overrides = {k: v for k, v in (("width", args.width), ("k_att", args.k_att)) if v is not None}
    torch.set_num_threads(args.threads)
    cases = [(c.split("@")[0], int(c.split("@")[1])) for c in args.cases.split(",")]
    devices = [("cpu", False)]
    reason = "--no-cuda" if args.no_cuda else cuda_skip_reason()
    if reason is None:
        devices.append(("cuda", True))
    print(f"# train_speed: batch {args.batch}, {args.threads} CPU threads, {args.rounds} rounds, overrides {args.overrides}, "
          f"torch {torch.__version__}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    print("\n".join(HEADER), flush=True)
    results = []
    for device, amp in devices:
        for model, size in cases:
            case = run_case(model, size, args, device, amp)
            results.append(case)
            print("\n".join(fmt_case(case)), flush=True)
    if reason is not None:
        print(f"CUDA + AMP: skipped ({reason})")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "cuda_skipped": reason,
                                         "cases": results}, indent=1, default=str))


if __name__ == "__main__":
    main()
