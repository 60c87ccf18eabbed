"""Command-line interface: thin Typer commands over the library functions.

User errors (AcmixError) print one line to stderr and exit non-zero, without a traceback.
"""

from __future__ import annotations

import sys

from acmix_deploy.cli.app import app
from acmix_deploy.errors import AcmixError

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
    try:
        app(args=argv, prog_name="acmix-deploy")
    except AcmixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


__all__ = ["app", "main"]
