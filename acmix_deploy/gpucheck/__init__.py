"""gpu-check: one command that runs every GPU-capable path this machine can run and reports the rest.

`acmix-deploy doctor --gpu-check [-o DIR] [--quick] [--device cpu|cuda]` (or
`python benchmarks/gpu_check.py` with the same options) checks torch eager / deploy / compile,
ONNX export, graph passes, fp16, ONNX Runtime on each execution provider, TensorRT engines and
the engine runner's refusals, interleaved timing and training steps. Each path is one row: ok,
"not available here: <reason>", or failed. `--device cpu` is the dry mode CI runs: the same code on
tiny models with CPU analogues. Modules: plan (what runs), context (shared models and artifacts),
core (steps and the parity gate), *_paths (the checks), run (order and budget), report (JSON +
markdown), cli (console output and exit status).
"""

from __future__ import annotations

__all__ = ["CheckOptions", "run_gpu_check"]


def __getattr__(name: str):
    if name in __all__:
        from acmix_deploy.gpucheck import run

        return getattr(run, name)
    raise AttributeError(name)
