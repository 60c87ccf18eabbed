"""`train --form`: the fast form is the default, is recorded in the checkpoints, `--resume` uses the
recorded form, and a run continued in the other form gives the same losses within the tolerance rule."""

from __future__ import annotations

import io

import pytest
import torch
from rich.console import Console

from acmix_deploy.checkpoint import read_checkpoint
from acmix_deploy.errors import AcmixError
from acmix_deploy.parity import FP32_TOL
from acmix_deploy.train.config import resumed_config
from acmix_deploy.train.loop import prepare, train

from .conftest import tiny_options


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200, soft_wrap=True), buf


def _options(data, out, **extra):
    # 80 train images at batch 40: 2 steps per epoch
    return tiny_options(data, out, **{"batch_size": 40, "epochs": 2, **extra})


@pytest.mark.slow
def test_resume_in_the_other_form_matches_within_tolerance(small_digits, tmp_path):
    console, buf = _console()
    cfg, _ = prepare(_options(small_digits, tmp_path / "run"))
    assert cfg.form == "fast"
    first = train(cfg, console=console, show_progress=False, stop_after=1)
    assert len(first.step_losses) == 2 and "fast ACmix form" in buf.getvalue()
    last = read_checkpoint(tmp_path / "run" / "last.pth")
    assert last.meta["form"] == "fast" and last.meta["train"]["config"]["form"] == "fast"

    losses = {}
    for form in ("fast", "reference"):
        console, buf = _console()
        cfg, state = prepare({"out": str(tmp_path / form), "form": None if form == "fast" else form},
                             resume=tmp_path / "run" / "last.pth")
        assert cfg.form == form  # the recorded form unless one is given
        losses[form] = train(cfg, state, console=console, show_progress=False).step_losses
        assert ("not bit-exactly" in buf.getvalue()) == (form != "fast")
        assert read_checkpoint(tmp_path / form / "last.pth").meta["form"] == form
    assert len(losses["fast"]) == 2
    for a, b in zip(losses["reference"], losses["fast"]):
        assert abs(a - b) <= FP32_TOL * abs(a), losses


def test_runs_saved_before_the_form_existed_resume_in_the_reference_form(tmp_path):
    saved = {"model": "resnet_acmix26", "data": "d", "out": "o", "epochs": 2}
    assert resumed_config(saved, {}, tmp_path / "last.pth").form == "reference"
    assert resumed_config({**saved, "form": "fast"}, {}, tmp_path / "last.pth").form == "fast"
    assert resumed_config(saved, {"form": "fast"}, tmp_path / "last.pth").form == "fast"


def test_unknown_form_is_a_one_line_error(small_digits, tmp_path):
    with pytest.raises(AcmixError, match="unknown --form 'turbo'"):
        prepare(_options(small_digits, tmp_path / "x", form="turbo"))


@pytest.mark.slow
def test_checkpoints_of_both_forms_load_into_the_reference_model(small_digits, tmp_path):
    """Weights trained in the fast form evaluate identically in the reference model `eval` builds."""
    from acmix_deploy.nn.acmix_train import to_form
    from acmix_deploy.registry import create_model

    cfg, _ = prepare(_options(small_digits, tmp_path / "run", epochs=1))
    train(cfg, console=_console()[0], show_progress=False)
    ref = create_model(None, checkpoint=tmp_path / "run" / "last.pth").eval()
    fast = to_form(create_model(None, checkpoint=tmp_path / "run" / "last.pth"), "fast").eval()
    x = torch.randn(3, 3, 20, 20)
    with torch.no_grad():
        a, b = ref(x), fast(x)
    assert (a - b).abs().max() <= FP32_TOL * a.abs().max()
