"""Child process of the torch-compile row: its first compile may take minutes, so the parent runs it
here and kills it when the run's time budget is spent. Prints one JSON line.

    python -m acmix_deploy.gpucheck.compile_child '{"name": ..., "build": {...}, "device": "cuda",
                                                   "backend": "inductor", "batch": 4}'
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    args = json.loads(argv[0])
    import torch

    from acmix_deploy.export import reference_and_deploy, verification_images
    from acmix_deploy.gpucheck.context import forward, strict_fp32
    from acmix_deploy.parity import FP32_TOL, compare

    device = args["device"]
    reference, deploy, _ = reference_and_deploy(args["name"], build=args["build"])
    deploy = deploy.eval().to(device)
    images = verification_images(reference.card, int(args["build"]["img_size"]), int(args["batch"]), seed=3)
    with strict_fp32():
        eager, eager_ms = forward(deploy, images, device)
        compiled = torch.compile(deploy, backend=args["backend"])
        t0 = time.perf_counter()
        first, _ = forward(compiled, images, device)
        compile_s = time.perf_counter() - t0
        out, ms = forward(compiled, images, device)
    result = compare(eager, out, FP32_TOL, name="compiled vs eager deploy form")
    numbers = {
        "max_abs": result.max_abs, "limit": result.tol * result.ref_scale, "tol": result.tol,
        "cosine": result.cosine, "compile_s": compile_s, "ms": ms, "eager_ms": eager_ms,
        "first_call_matches": bool(abs(first - out).max() <= result.tol * result.ref_scale),
    }
    print(json.dumps({"passed": result.passed, "line": result.line(), "numbers": numbers}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
