"""User-facing errors: one line, no traceback, and the CLI's exit codes.

Exit codes: 0 success; 2 bad input or environment (AcmixError, and Typer's usage errors);
3 a transformed model failed its parity check (ParityError, nothing written);
130 interrupted (SIGINT, Ctrl-C); 143 terminated (SIGTERM: kill, timeout, docker stop).
"""

EXIT_OK = 0
EXIT_USER = 2
EXIT_PARITY = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class AcmixError(Exception):
    """An error caused by the user's input or environment, reported as one line."""

    exit_code = EXIT_USER


class ParityError(AcmixError):
    """A transformed model no longer computes the reference function within tolerance."""

    exit_code = EXIT_PARITY


class Stopped(BaseException):
    """A signal asked the process to stop; raised in the main thread so `finally` blocks clean up.

    A BaseException (like KeyboardInterrupt) so that `except Exception` never swallows it, but not a
    KeyboardInterrupt, which Typer turns into a bare exit 130 without a message."""

    exit_code = EXIT_INTERRUPTED
    message = "interrupted"


class Interrupted(Stopped):
    exit_code = EXIT_INTERRUPTED
    message = "interrupted"


class Terminated(Stopped):
    exit_code = EXIT_TERMINATED
    message = "terminated"


def first_line(exc: BaseException) -> str:
    """An exception as one line: the first line of its message, else its type name."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
