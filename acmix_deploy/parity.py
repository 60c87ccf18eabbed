"""The one tolerance rule used by every gate (export, graph passes, precision, engines).

A candidate output passes against a reference when

* max |candidate - reference| <= tol * max |reference|, and
* top-1 agrees on every sample whose reference top-1 / top-2 margin exceeds 2 * max |diff|
  (samples closer than that may flip legitimately and are not counted against the candidate).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

FP32_TOL = 1e-4
FP16_TOL = 1e-2  # fp16 graphs against fp16 graphs (the graph passes' gate)
FP16_MIN_COSINE = 0.999  # fp16 against the fp32 reference: the convert-fp16 gate (cosine of the logits)


@dataclass(frozen=True)
class ParityResult:
    name: str
    max_abs: float
    max_rel: float
    ref_scale: float
    tol: float
    cosine: float
    top1_agreement: float | None
    top1_checked: int
    top1_mismatches: int
    passed: bool

    def line(self) -> str:
        status = "PASSED" if self.passed else "FAILED"
        top1 = (
            f", top-1 agreement {self.top1_agreement:.4f} "
            f"({self.top1_mismatches} decisive mismatches of {self.top1_checked})"
            if self.top1_agreement is not None
            else ""
        )
        return (
            f"{status} {self.name}: max abs {self.max_abs:.3e} (limit {self.tol * self.ref_scale:.3e} "
            f"= {self.tol:g} x max|ref| {self.ref_scale:.3e}), max rel {self.max_rel:.3e}, "
            f"cosine {self.cosine:.6f}{top1}"
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


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float((reference.argmax(-1) == candidate.argmax(-1)).mean())


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    tol: float = FP32_TOL,
    name: str = "output",
    classify: bool | None = None,
) -> ParityResult:
    """Compare one output; `classify` (default: 2-D output) also checks decisive top-1 agreement."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise ValueError(f"{name}: shape {candidate.shape} differs from reference {reference.shape}")
    finite = bool(np.isfinite(candidate).all())
    diff = np.abs(candidate - reference)
    max_abs = float(diff.max()) if diff.size else 0.0
    ref_scale = float(np.abs(reference).max()) if reference.size else 0.0
    max_rel = float((diff / np.maximum(np.abs(reference), 1e-12 + 1e-6 * ref_scale)).max()) if diff.size else 0.0
    passed = finite and max_abs <= tol * ref_scale
    if classify is None:
        classify = reference.ndim == 2 and reference.shape[-1] > 1
    agreement = None
    checked = mismatches = 0
    if classify:
        agreement = top1_agreement(reference, candidate)
        ordered = np.sort(reference, axis=-1)
        margin = ordered[:, -1] - ordered[:, -2]
        decisive = margin > 2 * max_abs
        checked = int(decisive.sum())
        mismatches = int((reference.argmax(-1) != candidate.argmax(-1))[decisive].sum())
        passed = passed and mismatches == 0
    return ParityResult(
        name=name,
        max_abs=max_abs,
        max_rel=max_rel,
        ref_scale=ref_scale,
        tol=tol,
        cosine=cosine_similarity(reference, candidate) if reference.ndim >= 1 and reference.size else 1.0,
        top1_agreement=agreement,
        top1_checked=checked,
        top1_mismatches=mismatches,
        passed=passed,
    )


def compare_all(
    references: dict[str, np.ndarray] | list[np.ndarray],
    candidates: dict[str, np.ndarray] | list[np.ndarray],
    tol: float = FP32_TOL,
) -> list[ParityResult]:
    """Compare several named outputs (e.g. the four stage outputs of a `--features` export)."""
    if isinstance(references, dict):
        return [compare(references[k], candidates[k], tol, name=k) for k in references]
    return [compare(r, c, tol, name=f"output{i}") for i, (r, c) in enumerate(zip(references, candidates))]
