"""`acmix-deploy serve`: a real Triton server (the tritonserver bundled in nvidia-pytriton).

Serves one artifact through the toolkit's runners (a python-backend model in a temporary
repository) or, with --repo, a repository written by `triton-repo --backend python`. The server
runs in its own process group; SIGINT / SIGTERM stop it gracefully (exit 130 / 143) and it is
killed with the command if the command itself is killed.
"""

from __future__ import annotations

import signal
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from acmix_deploy.cli._options import WorkspaceOption
from acmix_deploy.cli.app import app

_RUNNERS = ("onnxruntime", "onnxruntime-cuda", "tensorrt", "torch-deploy")
_KINDS = ("onnx", "onnx-optimized", "onnx-fp16", "onnx-int8")


class _Stop(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(130 if signum == signal.SIGINT else 143)


def default_runner(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".engine", ".plan", ".trt"):
        return "tensorrt"
    if suffix in (".pth", ".pt", ".ckpt"):
        return "torch-deploy"
    return "onnxruntime"


@app.command("serve")
def serve_command(
    artifact: Annotated[Path | None, typer.Argument(help="ONNX file, engine or checkpoint (default: the newest ONNX in the workspace).")] = None,
    repo: Annotated[Path | None, typer.Option("--repo", help="Serve this repository (from triton-repo --backend python) instead.")] = None,
    model_name: Annotated[str | None, typer.Option("--model-name", help="Served name (default: the artifact's model name).")] = None,
    runner: Annotated[str | None, typer.Option(help=f"One of {', '.join(_RUNNERS)} (default by file type).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 only when you mean it).")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option("--http-port")] = 8000,
    grpc_port: Annotated[int, typer.Option("--grpc-port")] = 8001,
    metrics_port: Annotated[int, typer.Option("--metrics-port")] = 8002,
    max_batch_size: Annotated[int, typer.Option("--max-batch-size")] = 8,
    queue_delay_us: Annotated[int, typer.Option("--max-queue-delay-us")] = 100,
    threads: Annotated[int | None, typer.Option(help="Runner threads (ONNX Runtime / PyTorch).")] = None,
    instances: Annotated[int, typer.Option(help="Model instances.")] = 1,
    ready_timeout: Annotated[float, typer.Option("--ready-timeout", help="Seconds to wait for the server.")] = 180.0,
    workspace: WorkspaceOption = None,
) -> None:
    """Start Triton on 127.0.0.1 with dynamic batching; Ctrl-C (or SIGTERM) stops it."""
    from acmix_deploy import workspace as ws
    from acmix_deploy.errors import AcmixError
    from acmix_deploy.serve.repository import inspect_artifact, runner_repository, triton_name
    from acmix_deploy.serve.server import TritonServer

    if repo is not None and artifact is not None:
        raise AcmixError("give an ARTIFACT or --repo, not both")
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    tmp = None
    server = None
    try:
        if repo is None:
            path = artifact or Path(ws.newest(_KINDS, workspace=workspace).path)
            chosen = runner or default_runner(path)
            if chosen not in _RUNNERS:
                raise AcmixError(f"--runner must be one of {', '.join(_RUNNERS)}, got {chosen!r}")
            name = triton_name(model_name or (path.stem if path.suffix.lower() in (".pth", ".pt", ".ckpt") else inspect_artifact(path, allow_rtx=True).name))
            tmp = tempfile.TemporaryDirectory(prefix="acmix-serve-repo-")
            repo = runner_repository(path, Path(tmp.name) / "repo", chosen, name, max_batch_size, queue_delay_us, threads, instances).root
        server = TritonServer(repo, host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port)
        server.start(ready_timeout)
        typer.echo(f"serving {', '.join(sorted(p.name for p in Path(repo).iterdir() if p.is_dir()))} "
                   f"on http://{server.url} (gRPC {server.grpc_url}, metrics :{server.metrics_port}); Ctrl-C stops")
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
        raise AcmixError(f"tritonserver exited with code {server.process.returncode}: {server.error_line()}")
    except _Stop as stop:
        typer.echo("stopping", err=True)
        raise typer.Exit(stop.code) from None
    finally:
        if server is not None:
            server.stop()
        if tmp is not None:
            tmp.cleanup()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
