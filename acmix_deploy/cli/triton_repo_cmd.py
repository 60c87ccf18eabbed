"""`acmix-deploy triton-repo`: a Triton model repository (config.pbtxt written from the artifact)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acmix_deploy.cli._options import WorkspaceOption, int_list
from acmix_deploy.cli.app import app

_KINDS = ("onnx", "onnx-optimized", "onnx-fp16", "onnx-int8", "engine")


@app.command("triton-repo")
def triton_repo_command(
    artifacts: Annotated[list[Path] | None, typer.Argument(help="ONNX files or engines (default: the newest in the workspace).")] = None,
    out: Annotated[Path, typer.Option("-o", "--output", help="Repository folder to write.")] = Path("triton_repository"),
    out_alias: Annotated[Path | None, typer.Option("--out", hidden=True)] = None,  # the old name, for one release
    backend: Annotated[str, typer.Option(help="auto: onnxruntime_onnx / tensorrt_plan by file; python: ONNX Runtime inside the python backend (CPU-only Triton).")] = "auto",
    name: Annotated[str | None, typer.Option("--name", help="Model name (default: the model name the artifact carries).")] = None,
    max_batch_size: Annotated[int, typer.Option("--max-batch-size", help="For a dynamic ONNX batch axis.")] = 8,
    dynamic_batching: Annotated[bool, typer.Option("--dynamic-batching/--no-dynamic-batching")] = True,
    queue_delay_us: Annotated[int, typer.Option("--max-queue-delay-us", help="Dynamic batcher's max_queue_delay_microseconds.")] = 100,
    preferred: Annotated[list[str] | None, typer.Option("--preferred-batch-size", help="e.g. 4,8")] = None,
    instance_kind: Annotated[str, typer.Option("--instance-kind", help="auto, cpu or gpu")] = "auto",
    instance_count: Annotated[int, typer.Option("--instances", help="Model instances per device.")] = 1,
    ensemble: Annotated[bool, typer.Option("--ensemble", help="Add <name>_preprocess (image bytes in) and the ensemble <name>_classify.")] = False,
    threads: Annotated[int | None, typer.Option(help="ONNX Runtime threads of a --backend python model.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing repository folder.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Write DIR/<name>/config.pbtxt and DIR/<name>/1/model.onnx|model.plan, validated, atomically."""
    from acmix_deploy import workspace as ws
    from acmix_deploy.errors import AcmixError
    from acmix_deploy.serve.repository import RepoOptions, triton_repo

    if instance_count < 1:
        raise AcmixError(f"--instances must be >= 1, got {instance_count}")
    paths = list(artifacts or []) or [Path(ws.newest(_KINDS, workspace=workspace).path)]
    options = RepoOptions(
        backend=backend, name=name, max_batch_size=max_batch_size, dynamic_batching=dynamic_batching,
        queue_delay_us=queue_delay_us, preferred_batch_sizes=int_list(preferred, "--preferred-batch-size"),
        instance_kind=f"KIND_{instance_kind.upper()}", instance_count=instance_count, ensemble=ensemble,
        threads=threads, force=force,
    )
    result = triton_repo(paths, out_alias or out, options)
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"wrote {result.root}: {', '.join(result.models)}")
