"""`info --checkpoint F [--checkpoint G] --plot rates.png`: the paper's Fig. 5 from any ACmix checkpoint."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from acmix_deploy.checkpoint import save_checkpoint
from acmix_deploy.errors import AcmixError
from acmix_deploy.rates import checkpoint_rates, rate_pairs
from acmix_deploy.registry import create_model
from tests.conftest import run_cli, small_overrides


def _checkpoint(name: str, path, seed: int) -> list[tuple[float, float]]:
    """Save a small model of `name` with distinct rates; returns them in block order."""
    model = create_model(name, **small_overrides(name))
    g = torch.Generator().manual_seed(seed)
    rates = []
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith("rate1"):
                r1, r2 = float(torch.rand(1, generator=g)) + 0.1, -float(torch.rand(1, generator=g)) - 0.1
                p.fill_(r1)
                model.get_parameter(key[: -len("rate1")] + "rate2").fill_(r2)
                rates.append((r1, r2))
    save_checkpoint(model, path)
    return rates


def test_info_plots_and_lists_one_pair_per_block(tmp_path):
    pvt = _checkpoint("pvt_acmix_t", tmp_path / "pvt.pth", 0)
    res = _checkpoint("resnet_acmix26", tmp_path / "res.pth", 1)
    png = tmp_path / "rates.png"
    out = run_cli("info", "--checkpoint", str(tmp_path / "pvt.pth"),
                  "--checkpoint", str(tmp_path / "res.pth"), "--plot", str(png), "--json")
    assert out.code == 0, out.err
    data = out.json()
    assert len(pvt) == 4 and len(res) == 8
    for label, expected in (("pvt.pth", pvt), ("res.pth", res)):
        got = data["rates"][label]
        assert [v for r in got for v in (r["rate1"], r["rate2"])] == pytest.approx([v for e in expected for v in e],
                                                                                  rel=1e-6)
        assert [r["log_abs_ratio"] for r in got] == pytest.approx([math.log(abs(a / b)) for a, b in expected], rel=1e-5)
    assert [r["block"] for r in data["rates"]["pvt.pth"]] == [f"block{i}.0.attn" for i in range(1, 5)]
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] > 1000


def test_baseline_checkpoint_has_no_rates(tmp_path):
    model = create_model("pvt_t", **small_overrides("pvt_t"))
    path = save_checkpoint(model, tmp_path / "base.pth")
    assert rate_pairs(model.state_dict()) == []
    with pytest.raises(AcmixError, match="no ACmix rate1 / rate2 pairs"):
        checkpoint_rates(path)
    assert checkpoint_rates(path, required=False) == []
