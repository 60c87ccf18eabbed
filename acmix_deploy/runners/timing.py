"""Timing loops: warm-up, then interleaved rounds over one or more runners.

Interleaving (round r calls every runner once, the order rotated each round) lets a model and its
baseline share the same machine state, so their ratio survives background noise that a sequential
"time A, then time B" would put into one side only. GPU calls are timed with CUDA events on the
current stream; CPU calls with perf_counter_ns. The Python garbage collector is off while timing.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from acmix_deploy.runners.gpu import torch_cuda_available


@dataclass(frozen=True)
class Budget:
    """How long a loop runs: `seconds` of wall time or exactly `iterations` rounds.

    With seconds, at least `min_iterations` rounds run even if they take longer.
    """

    seconds: float | None = None
    iterations: int | None = None
    min_iterations: int = 1
    max_iterations: int = 1_000_000

    def __post_init__(self) -> None:
        if (self.seconds is None) == (self.iterations is None):
            raise ValueError("a Budget takes exactly one of seconds or iterations")
        if self.seconds is not None and self.seconds < 0:
            raise ValueError("seconds must be >= 0")
        if self.iterations is not None and self.iterations < 0:
            raise ValueError("iterations must be >= 0")

    def done(self, rounds: int, elapsed_s: float) -> bool:
        if self.iterations is not None:
            return rounds >= self.iterations
        if rounds < self.min_iterations:
            return False
        return rounds >= self.max_iterations or elapsed_s >= float(self.seconds or 0.0)


@dataclass
class Timed:
    """One thing to time: `fn` runs one iteration; `sync` waits for queued device work.

    With `cuda`, CUDA events on torch's current stream time the call.
    """

    fn: Callable[[], object]
    cuda: bool = False
    sync: Callable[[], None] | None = None


def _time_once(item: Timed, use_events: bool) -> float:
    """Milliseconds for one call of item.fn (device work included)."""
    if item.cuda and use_events:
        import torch

        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        item.fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
    t0 = time.perf_counter_ns()
    item.fn()
    if item.sync is not None:
        item.sync()
    return (time.perf_counter_ns() - t0) / 1e6


def _rounds(items: Sequence[Timed], budget: Budget, record: bool) -> list[list[float]]:
    use_events = any(i.cuda for i in items) and torch_cuda_available()
    samples: list[list[float]] = [[] for _ in items]
    k = len(items)
    start = time.perf_counter()
    rounds = 0
    while not budget.done(rounds, time.perf_counter() - start):
        for j in range(k):
            idx = (j + rounds) % k  # rotate the order so no runner always goes first
            ms = _time_once(items[idx], use_events)
            if record:
                samples[idx].append(ms)
        rounds += 1
    return samples


def time_interleaved(items: Sequence[Timed], warmup: Budget, measure: Budget) -> list[np.ndarray]:
    """Warm up, then measure; returns per-item latency samples (ms), one per round."""
    if not items:
        return []
    _rounds(items, warmup, record=False)
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        samples = _rounds(items, measure, record=True)
    finally:
        if was_enabled:
            gc.enable()
    return [np.asarray(s, dtype=np.float64) for s in samples]
