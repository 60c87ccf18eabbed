"""The CLI's one top-level handler: every failure becomes one line on stderr and an exit code.

- AcmixError (bad input): its message, exit 2 (ParityError: 3);
- OSError (disk full, file too large, permission ...), MemoryError, RecursionError and torch.save's
  RuntimeError on a failed write: one line naming the file or the cause, exit 2;
- SIGINT / SIGTERM: raised as Interrupted / Terminated in the main thread, so every `finally` runs
  (temps removed, child processes ended); `error: interrupted` / `error: terminated`, exit 130 / 143;
- anything else is a bug: one line, exit 1.
The traceback is printed too when ACMIX_DEPLOY_TRACEBACK=1 (for bug reports).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator

from acmix_deploy.errors import EXIT_USER, AcmixError, Interrupted, Stopped, Terminated, first_line

TRACEBACK_ENV = "ACMIX_DEPLOY_TRACEBACK"
EXIT_INTERNAL = 1

_ERRNO_HINTS = {
    errno.ENOSPC: "no space left on the device",
    errno.EFBIG: "file too large (disk full or a file size limit such as ulimit -f)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
}
# torch.save reports a failed write as a RuntimeError from its zip writer.
_TORCH_WRITE_MARKERS = ("PytorchStreamWriter", "file write failed", "unexpected pos")


def describe(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for an exception that reached the top level."""
    if isinstance(exc, Stopped):
        return exc.exit_code, exc.message
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted.exit_code, Interrupted.message
    if isinstance(exc, AcmixError):
        return exc.exit_code, str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError):
        what = _ERRNO_HINTS.get(exc.errno) or exc.strerror or first_line(exc)
        target = exc.filename if exc.filename is not None else None
        return EXIT_USER, f"{target}: {what}" if target is not None else what
    if isinstance(exc, MemoryError):
        return EXIT_USER, "out of memory: use a smaller --img-size / --batch or a machine with more memory"
    if isinstance(exc, RecursionError):
        return EXIT_USER, "input nested too deeply to read (RecursionError): the file is malformed"
    if isinstance(exc, RuntimeError) and any(m in str(exc) for m in _TORCH_WRITE_MARKERS):
        return EXIT_USER, f"cannot write the checkpoint (disk full or a file size limit): {first_line(exc)}"
    return EXIT_INTERNAL, f"internal error {type(exc).__name__}: {first_line(exc)} (set {TRACEBACK_ENV}=1 for the traceback)"


def _raise_on(kind: type[Stopped]) -> Callable[[int, object], None]:
    def handler(signum: int, frame: object) -> None:
        # Later signals while cleaning up are ignored: the cleanup itself must not be cut short.
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise kind()

    return handler


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """SIGINT / SIGTERM raise Interrupted / Terminated; SIGXFSZ is ignored so a file size limit is an
    EFBIG write error (one line) instead of a core dump. Previous handlers are restored afterwards."""
    wanted = {signal.SIGINT: _raise_on(Interrupted), signal.SIGTERM: _raise_on(Terminated)}
    if hasattr(signal, "SIGXFSZ"):
        wanted[signal.SIGXFSZ] = signal.SIG_IGN
    previous: dict[int, object] = {}
    for sig, handler in wanted.items():
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            break
    try:
        yield
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)  # type: ignore[arg-type]


def report(exc: BaseException) -> int:
    """Print the one line (and the traceback when asked); return the exit code."""
    from acmix_deploy.fileio import cleanup_live_temps

    cleanup_live_temps()
    code, line = describe(exc)
    if os.environ.get(TRACEBACK_ENV, "").strip() not in ("", "0"):
        traceback.print_exception(exc, file=sys.stderr)
    print(f"error: {line}", file=sys.stderr, flush=True)
    return code


def run(app: Callable[..., object], argv: list[str] | None, prog_name: str = "acmix-deploy") -> None:
    """Run the Typer app under the handler; always ends in SystemExit."""
    with signals_as_exceptions():
        try:
            from acmix_deploy.cli._options import refuse_json_value

            refuse_json_value(sys.argv[1:] if argv is None else list(argv))
            app(args=argv, prog_name=prog_name)
        except SystemExit:
            raise
        except BaseException as exc:  # noqa: BLE001 - the one place every failure is turned into a line
            code = report(exc)
            sys.exit(code)
    sys.exit(0)
