"""Helpers shared by CLI commands: common options, comma-separated repeatable options, output checks, consoles."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from acmix_deploy.errors import AcmixError


# Options that several commands take with the same meaning (bench, profile, ...).
ImgSizeOption = Annotated[int | None, typer.Option("--img-size", help="Input resolution (default: the model's).")]
ThreadsOption = Annotated[int | None, typer.Option("--threads", help="Intra-op threads (default: all usable CPUs).")]
ShiftOption = Annotated[
    str | None, typer.Option("--shift", help="Conv-path shift of --model: group (default), fixed or tensor.")
]


def _workspace_folder(value: Path | None) -> Path | None:
    """--workspace is always the artifact folder: a value that reads as a memory size (4G, 512MiB) and
    is not an existing folder was meant for build-trt's --trt-workspace."""
    from acmix_deploy import validate

    if value is not None and not value.is_dir() and validate.is_size(str(value)):
        raise AcmixError(f"--workspace is the artifact folder, and {str(value)!r} reads as a memory size: "
                         f"TensorRT's scratch memory is build-trt --trt-workspace {value}")
    return value


WorkspaceOption = Annotated[
    Path | None,
    typer.Option("--workspace", callback=_workspace_folder, help="Artifact folder (default ./artifacts)."),
]
# The old name of build-trt's artifact folder: accepted for one release, not shown in --help.
ArtifactsAlias = Annotated[Path | None, typer.Option("--artifacts", hidden=True, callback=_workspace_folder)]
# --json has one meaning in every command: print the result as one JSON document on stdout (tables,
# notes and progress then go to stderr); -o/--output is where a command writes its result file.
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout (instead of the tables).")
]
OutputJsonOption = Annotated[
    Path | None, typer.Option("-o", "--output", help="Write the result as a JSON file (atomically).")
]


def emit_json(doc: object) -> None:
    """The --json document on stdout."""
    import json

    print(json.dumps(doc, indent=2), flush=True)


def refuse_json_value(argv: list[str]) -> None:
    """`--json FILE` (the old form of bench / profile / eval / loadtest): a one-line hint, not a parse
    error far from the cause (eval would take FILE for an artifact)."""
    for flag, value in zip(argv, argv[1:]):
        if flag == "--json" and value.lower().endswith(".json"):
            raise AcmixError(f"--json prints JSON on stdout and takes no file; write {value} with -o {value}")


def split_list(values: Iterable[str] | None) -> list[str]:
    """["a,b", "c"] -> ["a", "b", "c"]: list options may be repeated and comma-separated."""
    out: list[str] = []
    for value in values or []:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return out


def int_list(values: Iterable[str] | None, option: str) -> list[int]:
    out = []
    for v in split_list(values):
        try:
            n = int(v)
        except ValueError:
            raise AcmixError(f"{option} takes integers, got {v!r}") from None
        if n < 1:
            raise AcmixError(f"{option} values must be >= 1, got {n}")
        out.append(n)
    return list(dict.fromkeys(out))


def check_outputs(inputs: dict[str, Path | str | None] | None = None, **paths: Path | None) -> None:
    """Fail before a long run, not after it, when an output cannot be written, is another output, or
    is one of the `inputs` (option name -> path; resolved paths, symlinks and hard links compared)."""
    from acmix_deploy.fileio import check_collisions, check_destination

    given = {f"--{k}": p for k, p in paths.items() if p is not None}
    for name, path in given.items():
        check_destination(path, name)
    check_collisions({k: v for k, v in (inputs or {}).items() if v is not None and Path(v).exists()}, given)
    plot = paths.get("plot")
    if plot is not None and plot.suffix.lower() != ".png":
        raise AcmixError(f"--plot writes a PNG; name it *.png (got {plot})")


def stdout_console(stderr: bool = False):
    """The console of every command: tables and lines, 200 columns wide when not a terminal (logs,
    pipes), printed lines never wrapped (a path stays on one line; a terminal wraps for itself).
    `stderr=True`: the same for notes, progress and warnings (stdout then holds only the result)."""
    from rich.console import Console

    console = Console(soft_wrap=True, stderr=stderr)
    if not console.is_terminal:
        console = Console(width=200, soft_wrap=True, stderr=stderr)
    return console


def stderr_console():
    """stdout_console(stderr=True): progress, notes and warnings."""
    return stdout_console(stderr=True)


def warn(text: str) -> None:
    """A warning: one line on stderr, `warning: ` first (never on stdout, which may hold JSON)."""
    from rich.markup import escape

    stderr_console().print(f"[yellow]warning: {escape(text)}[/yellow]", highlight=False)
