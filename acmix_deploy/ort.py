"""ONNX Runtime helpers shared by verification, graph passes and benchmarks (imported lazily)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from acmix_deploy.errors import AcmixError, first_line


def import_onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError:
        raise AcmixError(
            "onnxruntime is not installed: pip install 'acmix-deploy[cpu]' (or [gpu] on GPU servers)"
        ) from None
    return ort


def make_session(
    model: str | os.PathLike[str] | bytes,
    threads: int | None = None,
    spinning: bool = True,
    providers: list[str] | None = None,
    optimization: str = "all",
    profile_prefix: str | None = None,
    save_optimized: str | os.PathLike[str] | None = None,
) -> Any:
    """An InferenceSession; `spinning=False` when sessions are timed interleaved (DESIGN.md section 4).

    `save_optimized`: where ONNX Runtime writes the graph it actually runs (profilers need this
    session's own copy: generated node names differ between two sessions of one model).
    """
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    opts.graph_optimization_level = levels[optimization]
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    if save_optimized is not None:
        opts.optimized_model_filepath = str(save_optimized)
    src = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(src, sess_options=opts, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception classes
        first = first_line(exc)
        raise AcmixError(f"ONNX Runtime cannot load the model: {first}") from None


def run(session: Any, inputs: dict[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
    """Run a session; a bare array feeds the first input. Returns outputs by name."""
    if isinstance(inputs, np.ndarray):
        inputs = {session.get_inputs()[0].name: inputs}
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))
