"""The Typer application object; each command lives in its own module of this package."""

import typer

app = typer.Typer(
    name="acmix-deploy",
    help="Deploy ACmix networks: PyTorch -> verified ONNX -> optimized graph -> TensorRT engine -> benchmarks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    # An explicit callback keeps `acmix-deploy COMMAND` a group even when only one command is registered.
    pass
