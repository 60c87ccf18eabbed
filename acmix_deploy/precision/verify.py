"""Compare a reduced-precision ONNX model with its fp32 source in ONNX Runtime.

Numbers reported: per-sample cosine similarity of the logits (mean and worst), max |diff| against
max |reference|, and top-1 agreement. The gate is chosen by the caller (fp16: cosine, int8: top-1
agreement). Note that ONNX Runtime's CPU provider runs many fp16 nodes through inserted fp32 casts,
so this check sees weight rounding rather than fp16 accumulation; `fp16.py` covers overflow separately.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from acmix_deploy.ort import make_session, run
from acmix_deploy.parity import per_sample_cosine


@dataclass(frozen=True)
class PrecisionReport:
    name: str
    samples: int
    cosine: float
    min_cosine_seen: float
    max_abs: float
    ref_scale: float
    top1_agreement: float
    top1_matches: int
    gate: str  # "cosine >= 0.999" ...
    passed: bool
    meaningful: bool = True

    def line(self) -> str:
        status = "PASSED" if self.passed else "FAILED"
        if not self.meaningful:
            status = "REPORTED (not meaningful: random inputs)"
        return (
            f"{status} {self.name} on {self.samples} held-out inputs: cosine {self.cosine:.6f} "
            f"(worst {self.min_cosine_seen:.6f}), max abs {self.max_abs:.3e} (max|ref| {self.ref_scale:.3e}), "
            f"top-1 agreement {self.top1_agreement:.4f} ({self.top1_matches}/{self.samples}); gate {self.gate}"
        )


def static_batch(session) -> int | None:
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) and dim > 0 else None


def padded_chunks(x: np.ndarray, size: int, pad_to: int | None = None) -> Iterator[tuple[np.ndarray, int]]:
    """(chunk, n) over `x` in chunks of at most `size` rows, n being the chunk's real row count; a
    chunk shorter than `pad_to` (a static or minimum batch) is padded with copies of its last row."""
    for start in range(0, len(x), size):
        part = x[start : start + size]
        n = len(part)
        if pad_to is not None and n < pad_to:
            part = np.concatenate([part, np.repeat(part[-1:], pad_to - n, axis=0)])
        yield part, n


def run_chunked(
    fn: Callable[[np.ndarray], Any], x: np.ndarray, size: int, pad_to: int | None = None
) -> np.ndarray:
    """`fn` over the `padded_chunks` of `x`; its float32 outputs without the padding rows, concatenated."""
    return np.concatenate([np.asarray(fn(part), dtype=np.float32)[:n] for part, n in padded_chunks(x, size, pad_to)])


def run_batched(session, x: np.ndarray, chunk: int = 16) -> np.ndarray:
    """First output of `session` over `x`, in chunks (a static-batch model gets its own batch size)."""
    fixed = static_batch(session)
    return run_chunked(
        lambda part: next(iter(run(session, np.ascontiguousarray(part)).values())), x, fixed or chunk, fixed
    )


def summarize(
    reference: np.ndarray, candidate: np.ndarray, name: str, gate: str, passed_fn, meaningful: bool = True
) -> PrecisionReport:
    """Numbers for `candidate` vs `reference` logits; `passed_fn(report_without_pass) -> bool`."""
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    finite = bool(np.isfinite(candidate).all())
    diff = np.abs(candidate - reference)
    cos = per_sample_cosine(reference, candidate) if finite else np.zeros(len(reference))
    matches = int((reference.reshape(len(reference), -1).argmax(1) == candidate.reshape(len(candidate), -1).argmax(1)).sum())
    report = PrecisionReport(
        name=name,
        samples=len(reference),
        cosine=float(cos.mean()) if finite else 0.0,
        min_cosine_seen=float(cos.min()) if len(cos) else 1.0,
        max_abs=float(diff.max()) if finite else float("inf"),
        ref_scale=float(np.abs(reference).max()),
        top1_agreement=matches / max(1, len(reference)),
        top1_matches=matches,
        gate=gate,
        passed=False,
        meaningful=meaningful,
    )
    ok = finite and bool(passed_fn(report))
    return PrecisionReport(**{**report.__dict__, "passed": ok})


def compare_models(reference: bytes | str, candidate: bytes | str, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits of both models on `inputs` (ONNX Runtime CPU, default graph optimisations)."""
    ref = run_batched(make_session(reference), inputs)
    cand = run_batched(make_session(candidate), inputs)
    return ref, cand
