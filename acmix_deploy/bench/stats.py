"""Latency statistics of one (backend, batch) cell: the numbers every report prints.

Percentiles use numpy's default linear interpolation. Throughput is derived from the median
(batch * 1000 / median_ms) because the median is what we compare everywhere: a few slow outliers on a
shared machine should not move it. CV is the sample standard deviation (ddof=1) over the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

CV_WARN = 0.05  # coefficient of variation above which a measurement is flagged as noisy


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-iteration latencies in milliseconds for one batch size."""

    iterations: int
    batch: int
    mean_ms: float
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    cv: float
    throughput_ips: float

    @property
    def noisy(self) -> bool:
        """True when the coefficient of variation exceeds CV_WARN (5 %)."""
        return self.cv > CV_WARN

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarize(samples_ms: Sequence[float] | np.ndarray, batch: int) -> LatencyStats:
    """Statistics of latencies (ms per call of `batch` images); needs at least one sample."""
    x = np.asarray(samples_ms, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("no latency samples to summarize")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if not np.isfinite(x).all() or (x < 0).any():
        raise ValueError("latency samples must be finite and non-negative")
    p90, p95, p99, median = np.percentile(x, [90, 95, 99, 50])
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    return LatencyStats(
        iterations=int(x.size),
        batch=int(batch),
        mean_ms=mean,
        median_ms=float(median),
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
        min_ms=float(x.min()),
        max_ms=float(x.max()),
        std_ms=std,
        cv=std / mean if mean > 0 else 0.0,
        throughput_ips=batch * 1000.0 / float(median) if median > 0 else float("inf"),
    )


def median_ratio(model: LatencyStats, baseline: LatencyStats) -> float:
    """Median latency of the model over the baseline's (> 1: the model is slower)."""
    return model.median_ms / baseline.median_ms


def paired_ratio(model_ms: Sequence[float], baseline_ms: Sequence[float]) -> float:
    """Median of per-round ratios of interleaved samples (> 1: the model is slower).

    The headline ratio: the two samples of a round run back to back, so a load change on a shared
    machine hits both; measured on a loaded 2-core machine it reproduced far better between runs
    than the ratio of the two medians, which compares samples taken at different times.
    """
    a = np.asarray(model_ms, dtype=np.float64)
    b = np.asarray(baseline_ms, dtype=np.float64)
    n = min(a.size, b.size)
    if n == 0:
        raise ValueError("no paired samples")
    return float(np.median(a[:n] / b[:n]))
