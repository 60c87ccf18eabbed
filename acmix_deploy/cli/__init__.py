"""Command-line interface: thin Typer commands over the library functions.

Every failure prints one line to stderr and exits non-zero, without a traceback (see _entry.py).
"""

from __future__ import annotations

from acmix_deploy.cli._entry import run
from acmix_deploy.cli.app import app

# Each import registers its commands on `app`, in the order `--help` lists them.
from acmix_deploy.cli import models_cmd  # noqa: E402,F401
from acmix_deploy.cli import export_cmd  # noqa: E402,F401
from acmix_deploy.cli import optimize_cmd  # noqa: E402,F401
from acmix_deploy.cli import convert_fp16_cmd, quantize_int8_cmd, build_trt_cmd, inspect_cmd  # noqa: E402,F401
from acmix_deploy.cli import bench_cmd  # noqa: E402,F401
from acmix_deploy.cli import profile_cmd  # noqa: E402,F401
from acmix_deploy.cli import data_cmd, train_cmd, eval_cmd  # noqa: E402,F401
from acmix_deploy.cli import triton_repo_cmd, serve_cmd, loadtest_cmd  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    """The console entry: the app under the top-level handler (one-line errors, signals, exit codes)."""
    run(app, argv)


__all__ = ["app", "main"]
