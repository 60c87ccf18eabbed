"""`acmix-deploy data ...`: small real datasets that ship inside packages (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acmix_deploy.cli.app import app

data_app = typer.Typer(help="Write small bundled datasets as ImageFolders (no download).", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("digits")
def digits_command(
    out: Annotated[Path, typer.Argument(help="Folder to create: DIR/train/<digit>/ and DIR/val/<digit>/.")],
    size: Annotated[int, typer.Option(help="Image side in px (8 = the original 8x8).")] = 32,
    resample: Annotated[str, typer.Option(help="Upscaling filter: bilinear, nearest or bicubic.")] = "bilinear",
    npy: Annotated[Path | None, typer.Option(help="Also write the train split as uint8 (N, H, W, 3) RGB .npy (calibration data).")] = None,
    force: Annotated[bool, typer.Option(help="Replace DIR if it exists.")] = False,
) -> None:
    """scikit-learn's 1,797 handwritten digits, fixed stratified 80/20 split (seed 0): 1,437 train / 360 val."""
    from acmix_deploy.cli._options import stdout_console
    from acmix_deploy.train.digits import write_digits

    written = write_digits(out, size=size, resample=resample, npy=npy, force=force)
    console = stdout_console()
    totals = written.totals
    console.print(
        f"wrote {out}: {totals['train']} train / {totals['val']} val images, 10 classes, "
        f"{written.size}x{written.size} RGB PNG"
    )
    for split, counts in written.counts.items():
        console.print(f"  {split:<5} per class: " + " ".join(f"{k}:{v}" for k, v in counts.items()))
    if written.npy is not None:
        console.print(f"wrote {written.npy}: uint8 {written.npy_shape} (train split, NHWC RGB)")
