"""User-facing errors: one line, no traceback, exit code 2 from the CLI."""


class AcmixError(Exception):
    """An error caused by the user's input or environment, reported as one line."""

    exit_code = 2


class ParityError(AcmixError):
    """A transformed model no longer computes the reference function within tolerance."""

    exit_code = 3


def first_line(exc: BaseException) -> str:
    """An exception as one line: the first line of its message, else its type name."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
