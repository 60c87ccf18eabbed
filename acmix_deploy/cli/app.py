"""The Typer application object; each command lives in its own module of this package."""

from typing import Annotated

import typer
from typer.core import TyperOption

app = typer.Typer(
    name="acmix-deploy",
    help="Deploy ACmix networks: PyTorch -> verified ONNX -> optimized graph -> TensorRT engine -> benchmarks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _flag_type_without_placeholder(original):
    """Typer's rich help labels every on/off flag `<bool>` (`--help <bool>`): a flag takes no value,
    so its type column stays empty; options that take values keep their `<int>` / `<path>` labels."""

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else original(self, ctx)

    return display_type_rich


if not getattr(TyperOption.display_type_rich, "_acmix_patched", False):
    TyperOption.display_type_rich = _flag_type_without_placeholder(TyperOption.display_type_rich)
    TyperOption.display_type_rich._acmix_patched = True


def _print_version(value: bool) -> None:
    if value:
        from acmix_deploy import __version__

        print(f"acmix-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    # An explicit callback keeps `acmix-deploy COMMAND` a group even when only one command is registered.
    pass
