"""Run a reduced-precision ONNX model and its fp32 source over the same inputs in ONNX Runtime.

The numbers and the gate are acmix_deploy.parity's (`judge`: cosine, max |diff|, top-1 agreement;
the caller picks the gate: fp16 cosine, int8 top-1 agreement). Note that ONNX Runtime's CPU provider
runs many fp16 nodes through inserted fp32 casts, so this check sees weight rounding rather than fp16
accumulation; `fp16.py` covers overflow separately.
"""

from __future__ import annotations

import numpy as np

from acmix_deploy.runners import OnnxRuntimeRunner


def model_logits(model: bytes | str, inputs: np.ndarray, chunk: int = 16) -> np.ndarray:
    """First output of `model` (path or bytes) over `inputs`, in chunks the model takes (ONNX Runtime
    CPU, default graph optimisations)."""
    with OnnxRuntimeRunner(model) as runner:
        return runner.first_output(inputs, chunk)


def compare_models(reference: bytes | str, candidate: bytes | str, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits of both models on `inputs`."""
    return model_logits(reference, inputs), model_logits(candidate, inputs)
