"""Peak memory of one backend alone: measured in a fresh child process (multiprocessing spawn).

The timing process holds every backend it has loaded, so its own peak says nothing about one of
them. Each measurement therefore spawns a child that builds only that runner, runs `iterations`
inferences at one batch size and reports:

* peak_rss_mb: the child's peak resident set (VmHWM from /proc, else ru_maxrss): interpreter,
  libraries, weights and activations of this backend; what a process serving it would need;
* base_rss_mb: the child's resident set before the backend was built (interpreter + numpy), so
  peak_rss_mb - base_rss_mb is what the backend itself added;
* gpu_peak_mb on a GPU: torch.cuda.max_memory_allocated for torch backends ("torch-allocator"),
  otherwise the growth of device-wide used memory ("device-used-delta", approximate: other
  processes on the same GPU count too).
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
from dataclasses import asdict, dataclass
from typing import Any

from acmix_deploy.bench.sources import ModelSource


@dataclass(frozen=True)
class MemoryStats:
    peak_rss_mb: float
    base_rss_mb: float
    gpu_peak_mb: float | None = None
    gpu_method: str | None = None

    @property
    def added_rss_mb(self) -> float:
        return self.peak_rss_mb - self.base_rss_mb

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "added_rss_mb": self.added_rss_mb}


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        return None
    return None


def current_rss_mb() -> float:
    rss = _proc_status_mb("VmRSS")
    return rss if rss is not None else peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's peak resident set in MiB."""
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024.0 * 1024.0) if sys.platform == "darwin" else maxrss / 1024.0


def _measure(backend: str, source: ModelSource, options: Any, batch: int, iterations: int) -> MemoryStats:
    """Runs inside the child: build one runner, run it, read the peaks."""
    base = current_rss_mb()
    from acmix_deploy.runners import create_runner

    gpu = options.device == "cuda" or backend in ("onnxruntime-cuda", "onnxruntime-trt", "tensorrt")
    free_before = None
    torch = None
    if gpu:
        import torch

        if torch.cuda.is_available():
            torch.cuda.init()
            torch.cuda.reset_peak_memory_stats()
            free_before = torch.cuda.mem_get_info()[0]
    runner = create_runner(backend, source, options)
    try:
        x = runner.prepare(batch)
        for _ in range(iterations):
            runner(x)
        runner.synchronize()
        gpu_mb = method = None
        if torch is not None and free_before is not None:
            if backend.startswith("torch"):
                gpu_mb, method = torch.cuda.max_memory_allocated() / 2**20, "torch-allocator"
            else:
                gpu_mb = (free_before - torch.cuda.mem_get_info()[0]) / 2**20
                method = "device-used-delta"
        return MemoryStats(peak_rss_mb=peak_rss_mb(), base_rss_mb=base, gpu_peak_mb=gpu_mb, gpu_method=method)
    finally:
        runner.close()


def _child_main(conn: Any, args: tuple) -> None:
    try:
        conn.send(("ok", _measure(*args)))
    except BaseException as exc:  # report every failure to the parent as one line
        text = str(exc).strip().splitlines()
        conn.send(("error", f"{type(exc).__name__}: {text[0] if text else ''}"))
    finally:
        conn.close()


def measure_memory(
    backend: str,
    source: ModelSource,
    options: Any,
    batch: int,
    iterations: int = 3,
    timeout_s: float = 900.0,
) -> MemoryStats:
    """Peak memory of `backend` running `source` at `batch`, in a spawned child process.

    `source` must be picklable (a torch factory at module level, a concrete ONNX path). Raises
    RuntimeError with the child's one-line reason when it fails.
    """
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(child, (backend, source, options, batch, iterations)), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            raise RuntimeError(f"memory measurement timed out after {timeout_s:.0f} s")
        status, payload = parent.recv()
    except EOFError:
        raise RuntimeError("memory measurement child died without a result") from None
    except BaseException:  # interrupted / terminated: end the child now, not after a 10 s join
        proc.kill()
        raise
    finally:
        parent.close()
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if status != "ok":
        raise RuntimeError(payload)
    return payload
