"""`acmix-deploy train`: train a registered model on an ImageFolder dataset.

Multi-process: the same command under torchrun, e.g.
`torchrun --nproc_per_node 2 -m acmix_deploy.cli train --model ... --data ...`
(nccl on GPUs, gloo on CPU; --batch-size is the global batch; only rank 0 writes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acmix_deploy.cli.app import app

_MODEL = "Model overrides"
_RECIPE = "Recipe"


@app.command("train")
def train_command(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Registered model name (see list-models).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="ImageFolder root with train/<class>/ and val/<class>/.")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--output", help="Run folder \\[default: runs/<model>; on resume: the checkpoint's folder].")] = None,
    out_alias: Annotated[Path | None, typer.Option("--out", hidden=True)] = None,  # the old name, for one release
    epochs: Annotated[int | None, typer.Option(help="Epochs \\[default: 30].", rich_help_panel=_RECIPE)] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", "-b", help="Global batch size, split over torchrun processes \\[default: 64].", rich_help_panel=_RECIPE)] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate \\[default: the model card's if it sets one (SAN: 0.01 sgd), else 0.1 sgd, 1e-3 adamw].", rich_help_panel=_RECIPE)] = None,
    opt: Annotated[str | None, typer.Option(help="sgd (Nesterov momentum 0.9) or adamw \\[default: sgd].", rich_help_panel=_RECIPE)] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay", help="Not applied to norms, biases, rate1/rate2, position bias tables \\[default: 5e-5 sgd, 0.05 adamw].", rich_help_panel=_RECIPE)] = None,
    warmup_epochs: Annotated[float | None, typer.Option("--warmup-epochs", help="Linear warm-up before the cosine decay \\[default: 1].", rich_help_panel=_RECIPE)] = None,
    label_smoothing: Annotated[float | None, typer.Option("--label-smoothing", help="\\[default: 0.1]", rich_help_panel=_RECIPE)] = None,
    min_scale: Annotated[float | None, typer.Option("--min-scale", help="Smallest area fraction of the random resized crop \\[default: 0.35].", rich_help_panel=_RECIPE)] = None,
    hflip: Annotated[bool | None, typer.Option("--hflip/--no-hflip", help="Random horizontal flips (off for digits / text) \\[default: on].", rich_help_panel=_RECIPE)] = None,
    img_size: Annotated[int | None, typer.Option("--img-size", help="Input size in px \\[default: the model card's].", rich_help_panel=_RECIPE)] = None,
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="Mixed precision on CUDA (bf16, else fp16 with loss scaling); ignored with a warning on CPU.", rich_help_panel=_RECIPE)] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for init, shuffling and augmentation \\[default: 0].", rich_help_panel=_RECIPE)] = None,
    form: Annotated[str | None, typer.Option(help="ResNet-ACmix block form: fast (exact, halo-blocked; default) or reference (the official maths). Same weights and checkpoints.", rich_help_panel=_RECIPE)] = None,
    compile_: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile the training forward (needs a C++ compiler on CPU; compiling takes minutes).", rich_help_panel=_RECIPE)] = None,
    workers: Annotated[int | None, typer.Option(help="Data loader worker processes per training process \\[default: 2].")] = None,
    threads: Annotated[int | None, typer.Option(help="torch intra-op threads per process (1 is faster for tiny models and on busy machines) \\[default: torch's].")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue a run exactly from its last.pth (the recipe comes from the file).")] = None,
    width: Annotated[int | None, typer.Option(help="Base width (ResNet stem / Swin embed dim).", rich_help_panel=_MODEL)] = None,
    k_att: Annotated[int | None, typer.Option("--k-att", help="ResNet-ACmix attention window (odd).", rich_help_panel=_MODEL)] = None,
    heads: Annotated[int | None, typer.Option(help="Attention heads (Swin: of the first stage).", rich_help_panel=_MODEL)] = None,
    shift: Annotated[str | None, typer.Option(help="Shift implementation: group, fixed or tensor.", rich_help_panel=_MODEL)] = None,
    window: Annotated[int | None, typer.Option(help="Swin window size.", rich_help_panel=_MODEL)] = None,
    drop_path: Annotated[float | None, typer.Option("--drop-path", help="Swin stochastic depth rate.", rich_help_panel=_MODEL)] = None,
    kernels: Annotated[str | None, typer.Option(help="SAN kernel per stage, comma-separated (digits at 64 px: 3,3,3,3,3).", rich_help_panel=_MODEL)] = None,
    num_classes: Annotated[int | None, typer.Option("--num-classes", help="Checked against the class folders (taken from the data when omitted).", rich_help_panel=_MODEL)] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars.")] = True,
) -> None:
    """Train with SGD/AdamW + warm-up + cosine, label smoothing; writes last.pth, best.pth, metrics.csv, curves.png."""
    from acmix_deploy.train.loop import prepare, train

    out = out or out_alias

    options = {
        "model": model, "data": str(data) if data else None, "out": str(out) if out else None,
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "opt": opt, "weight_decay": weight_decay,
        "warmup_epochs": warmup_epochs, "label_smoothing": label_smoothing, "min_scale": min_scale,
        "hflip": hflip, "img_size": img_size, "amp": amp, "seed": seed, "workers": workers, "threads": threads,
        "form": form, "compile": compile_,
    }
    overrides = {"width": width, "k_att": k_att, "heads": heads, "shift": shift, "window": window,
                 "drop_path_rate": drop_path, "num_classes": num_classes, "kernels": _int_list(kernels)}
    if any(v is not None for v in overrides.values()):
        options["overrides"] = {k: v for k, v in overrides.items() if v is not None}
    config, state = prepare(options, resume)
    train(config, state, show_progress=progress)


def _int_list(text: str | None) -> list[int] | None:
    """"3,3,3,3,3" -> [3, 3, 3, 3, 3]; a malformed list is a one-line error."""
    if text is None:
        return None
    from acmix_deploy.errors import AcmixError

    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise AcmixError(f"--kernels takes comma-separated integers such as 3,3,3,3,3, got {text!r}") from None
