"""Steps, outcomes and the parity gate shared by every gpu-check path.

A step returns `(reason, numbers)` when its path works; it raises NotAvailable when the path cannot
run here (missing backend, no GPU, a prerequisite row did not pass) and CheckFailed when it ran and
gave a wrong answer. Any other exception is a failure too, reported in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Outcome = tuple[str, dict[str, Any]]


class NotAvailable(Exception):
    """This path cannot run on this machine; the message says why."""


class CheckFailed(Exception):
    """The path ran and its result is wrong (parity, non-finite loss, a refusal that did not happen)."""

    def __init__(self, reason: str, numbers: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.numbers = numbers or {}


@dataclass
class Step:
    """One row to produce; `min_s` is the budget it needs left to start (else it is skipped)."""

    path: str
    precision: str
    subject: str
    fn: Callable[[], Outcome]
    device: str = "-"
    min_s: float = 0.0


def parity_outcome(reference: np.ndarray, candidate: np.ndarray, tol: float, name: str,
                   min_cosine: float | None = None) -> Outcome:
    """The tolerance rule (acmix_deploy.parity.compare) as an outcome; CheckFailed when it fails.

    With `min_cosine` (fp16 against the fp32 reference) the gate is the convert-fp16 one instead:
    mean cosine >= min_cosine and no decisive top-1 mismatch; max abs against tol x max|ref| is
    still reported. (ResNet-ACmix-50 at 224 px under fp16 autocast on the CPU: max abs 2.2x the
    1e-2 limit at cosine 0.99966, so the fp32-style rule would fail any fp16 run.)
    """
    from acmix_deploy.parity import compare

    result = compare(np.asarray(reference, np.float32), np.asarray(candidate, np.float32), tol, name=name,
                     min_cosine=min_cosine)
    numbers = {
        "max_abs": result.max_abs,
        "limit": tol * result.ref_scale,
        "tol": tol,
        "ref_scale": result.ref_scale,
        "max_rel": result.max_rel,
        "cosine": result.cosine,
        "top1_agreement": result.top1_agreement,
        "top1_checked": result.top1_checked,
        "samples": result.samples,
        "gate": f"max abs <= {tol:g} x max|ref|" if min_cosine is None else f"cosine >= {min_cosine:g}",
    }
    passed, line = result.passed, result.line()
    if not passed:
        raise CheckFailed(line, numbers)
    return line, numbers


def precision_outcome(reference: np.ndarray, candidate: np.ndarray, precision: str, name: str) -> Outcome:
    """fp32: the tolerance rule at 1e-4; fp16: the convert-fp16 gate (see parity_outcome)."""
    from acmix_deploy.parity import FP16_MIN_COSINE, FP16_TOL, FP32_TOL

    if precision == "fp32":
        return parity_outcome(reference, candidate, FP32_TOL, name)
    return parity_outcome(reference, candidate, FP16_TOL, name, min_cosine=FP16_MIN_COSINE)


def module_missing(module: str) -> str | None:
    """None when `module` imports, else the reason it does not (for "not available here" rows)."""
    import importlib

    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken install raising anything else
        from acmix_deploy.errors import first_line

        return f"{module.replace('_', '-')} missing ({first_line(exc)})"
    return None
