"""TensorRT import shim: one code path for `tensorrt` (10.x / 11.x) and `tensorrt_rtx`.

Both packages expose the same builder, ONNX parser and runtime API; the differences that matter
(timing cache, optimisation level, target compute capabilities) are handled in `build.py`.
Nothing here is imported by `import acmix_deploy`: TensorRT is optional.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from acmix_deploy.errors import AcmixError

TENSORRT = "tensorrt"
TENSORRT_RTX = "tensorrt-rtx"
RUNTIMES = ("auto", TENSORRT, TENSORRT_RTX)

_MODULES = {TENSORRT: "tensorrt", TENSORRT_RTX: "tensorrt_rtx"}
_INSTALL = {
    TENSORRT: "pip install tensorrt (or 'acmix-deploy[gpu]') on a machine with an NVIDIA GPU and driver, "
    "or use the Docker image",
    TENSORRT_RTX: "pip install tensorrt-rtx-cu12 (or 'acmix-deploy[rtx]'); it builds engines without a GPU",
}


def _try_import(flavour: str) -> tuple[ModuleType | None, str]:
    """Import one flavour; returns (module, "") or (None, reason)."""
    try:
        module = importlib.import_module(_MODULES[flavour])
    except ImportError as exc:
        return None, str(exc).splitlines()[0] if str(exc) else "not installed"
    except Exception as exc:  # a broken install (e.g. a stub wheel or missing CUDA libraries)
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'import failed'}"
    if not hasattr(module, "Builder"):  # stub packages that only download the real wheel later
        return None, "the installed package has no Builder (a stub or incomplete install)"
    return module, ""


def load_trt(runtime: str = "auto") -> tuple[ModuleType, str, str]:
    """Return (module, flavour, version) for `runtime` in auto | tensorrt | tensorrt-rtx.

    `auto` prefers `tensorrt` (data-centre GPUs, timing cache, optimisation levels) and falls back
    to `tensorrt_rtx` (RTX GPUs; builds ahead of time on machines without a GPU).
    """
    runtime = (runtime or "auto").lower().replace("_", "-")
    if runtime not in RUNTIMES:
        raise AcmixError(f"unknown TensorRT runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    order = (TENSORRT, TENSORRT_RTX) if runtime == "auto" else (runtime,)
    reasons = []
    for flavour in order:
        module, reason = _try_import(flavour)
        if module is not None:
            return module, flavour, str(getattr(module, "__version__", "unknown"))
        reasons.append((flavour, reason))
    if runtime == "auto":
        raise AcmixError(
            "no TensorRT runtime is installed: on a GPU server "
            f"{_INSTALL[TENSORRT]}; elsewhere {_INSTALL[TENSORRT_RTX]}"
        )
    flavour, reason = reasons[0]
    raise AcmixError(f"{_MODULES[flavour]} cannot be imported ({reason}): {_INSTALL[flavour]}")


def make_logger(trt: ModuleType):
    class _Logger(trt.ILogger):
        """Keeps errors for the one-line failure message; TensorRT's warnings and chatter stay quiet."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg) -> None:  # noqa: D401 - TensorRT callback
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg).strip())

    return _Logger()


__all__ = ["TENSORRT", "TENSORRT_RTX", "RUNTIMES", "load_trt", "make_logger"]
