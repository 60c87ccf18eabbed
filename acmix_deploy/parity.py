"""The one comparator: every gate (export, graph passes, precision, engines, gpu-check) measures here.

One result type (ParityResult), one PASSED / FAILED line, one way to compute max |diff|, cosine and
top-1 agreement. Two ways to decide:

* `compare` - the tolerance rule. A candidate passes against a reference when
  max |candidate - reference| <= tol * max |reference| and top-1 agrees on every sample whose
  reference top-1 / top-2 margin exceeds 2 * max |diff| (closer samples may flip legitimately and
  are not counted against the candidate). With `min_cosine` (fp16 against the fp32 reference) the
  first condition becomes mean cosine >= min_cosine; max abs against the limit is still reported.
* `judge` - a precision gate chosen by the caller (convert-fp16: cosine, quantize-int8: top-1
  agreement) over held-out inputs, with the same numbers and the same line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np

FP32_TOL = 1e-4
FP16_TOL = 1e-2  # fp16 graphs against fp16 graphs (the graph passes' gate)
FP16_MIN_COSINE = 0.999  # fp16 against the fp32 reference: the convert-fp16 gate (cosine of the logits)
NOT_MEANINGFUL = "REPORTED (not meaningful: random inputs)"


@dataclass(frozen=True)
class ParityResult:
    """Numbers of one candidate output against its reference, and the verdict of one gate."""

    name: str
    samples: int
    max_abs: float
    max_rel: float
    ref_scale: float
    cosine: float  # mean per-sample cosine
    min_cosine: float  # worst sample
    top1_agreement: float | None  # None: not a classifier output
    top1_matches: int
    top1_checked: int  # samples whose reference margin is decisive
    top1_mismatches: int  # decisive samples whose top-1 differs
    gate: str
    passed: bool
    tol: float | None = None  # the tolerance rule's tol (None: a precision gate without one)
    inputs: str | None = None  # e.g. "held-out inputs": the line then says "on N held-out inputs"
    meaningful: bool = True  # False: the inputs say nothing (random images for an int8 model)

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.max_abs))

    def line(self) -> str:
        status = "PASSED" if self.passed else "FAILED"
        if not self.meaningful:
            status = NOT_MEANINGFUL
        where = f" on {self.samples} {self.inputs}" if self.inputs else ""
        if self.tol is not None:
            scale = f"limit {self.tol * self.ref_scale:.3e} = {self.tol:g} x max|ref| {self.ref_scale:.3e}"
        else:
            scale = f"max|ref| {self.ref_scale:.3e}"
        top1 = ""
        if self.top1_agreement is not None:
            top1 = (f", top-1 agreement {self.top1_agreement:.4f} ({self.top1_matches}/{self.samples}, "
                    f"{self.top1_mismatches} decisive mismatches of {self.top1_checked})")
        return (
            f"{status} {self.name}{where}: max abs {self.max_abs:.3e} ({scale}), max rel {self.max_rel:.3e}, "
            f"cosine {self.cosine:.6f} (worst {self.min_cosine:.6f}){top1}; gate {self.gate}"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def per_sample_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample of two (N, ...) arrays (1.0 where either sample is all zero)."""
    a2 = a.reshape(len(a), -1).astype(np.float64)
    b2 = b.reshape(len(b), -1).astype(np.float64)
    den = np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1)
    return np.where(den > 0, (a2 * b2).sum(1) / np.maximum(den, 1e-300), 1.0)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-sample cosine similarity of two (N, ...) arrays."""
    return float(per_sample_cosine(a, b).mean())


def _measure(reference: np.ndarray, candidate: np.ndarray, name: str, classify: bool) -> ParityResult:
    """Every number of a comparison; `passed` is left False and `gate` empty for the deciding caller."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise ValueError(f"{name}: shape {candidate.shape} differs from reference {reference.shape}")
    finite = bool(np.isfinite(candidate).all())
    diff = np.abs(candidate - reference)
    max_abs = (float(diff.max()) if diff.size else 0.0) if finite else float("inf")
    ref_scale = float(np.abs(reference).max()) if reference.size else 0.0
    max_rel = float((diff / np.maximum(np.abs(reference), 1e-12 + 1e-6 * ref_scale)).max()) if diff.size else 0.0
    samples = len(reference) if reference.ndim else 1
    cos = per_sample_cosine(reference, candidate) if reference.ndim and reference.size and finite else None
    agreement, matches, checked, mismatches = None, 0, 0, 0
    if classify and reference.ndim and reference.size:
        ref2, cand2 = reference.reshape(samples, -1), candidate.reshape(samples, -1)
        same = ref2.argmax(1) == cand2.argmax(1)
        matches = int(same.sum())
        agreement = matches / max(1, samples)
        if ref2.shape[1] > 1:
            ordered = np.sort(ref2, axis=1)
            decisive = (ordered[:, -1] - ordered[:, -2]) > 2 * max_abs
            checked, mismatches = int(decisive.sum()), int((~same)[decisive].sum())
    return ParityResult(
        name=name, samples=samples, max_abs=max_abs, max_rel=max_rel if finite else float("inf"),
        ref_scale=ref_scale,
        cosine=(float(cos.mean()) if cos is not None else (1.0 if finite else 0.0)),
        min_cosine=(float(cos.min()) if cos is not None else (1.0 if finite else 0.0)),
        top1_agreement=agreement, top1_matches=matches, top1_checked=checked, top1_mismatches=mismatches,
        gate="", passed=False,
    )


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    tol: float = FP32_TOL,
    name: str = "output",
    classify: bool | None = None,
    min_cosine: float | None = None,
) -> ParityResult:
    """The tolerance rule for one output; `classify` (default: a 2-D output with several columns)
    also requires no decisive top-1 mismatch; `min_cosine` swaps the max-abs limit for a cosine one."""
    ref = np.asarray(reference)
    if classify is None:
        classify = ref.ndim == 2 and ref.shape[-1] > 1
    r = _measure(reference, candidate, name, classify)
    if min_cosine is None:
        ok, gate = r.max_abs <= tol * r.ref_scale, f"max abs <= {tol:g} x max|ref|"
    else:
        ok, gate = r.cosine >= min_cosine, f"cosine >= {min_cosine:g}"
    if classify:
        ok, gate = ok and r.top1_mismatches == 0, gate + ", no decisive top-1 flip"
    return replace(r, tol=tol, gate=gate, passed=bool(r.finite and ok))


def judge(
    reference: np.ndarray,
    candidate: np.ndarray,
    name: str,
    gate: str,
    passed_fn: Callable[[ParityResult], bool],
    meaningful: bool = True,
    inputs: str = "held-out inputs",
) -> ParityResult:
    """A precision gate: the numbers of `candidate` vs `reference` logits, `passed_fn(numbers)` decides
    (a non-finite candidate never passes)."""
    r = replace(_measure(reference, candidate, name, classify=True), gate=gate, inputs=inputs, meaningful=meaningful)
    return replace(r, passed=bool(r.finite and passed_fn(r)))
