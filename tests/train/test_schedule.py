"""Recipe pieces: which parameters decay, the warm-up + cosine schedule, config checks on resume."""

from __future__ import annotations

import math

import pytest
import torch

from acmix_deploy.errors import AcmixError
from acmix_deploy.registry import create_model
from acmix_deploy.train.config import TrainConfig, resumed_config
from acmix_deploy.train.schedule import WarmupCosine, make_optimizer, param_groups


def test_no_decay_for_norms_biases_rates_and_position_tables():
    model = create_model("resnet_acmix26", num_classes=10, img_size=20, width=8, k_att=3)
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert "layer1.0.conv2.rate1" in no_decay_names and "layer1.0.conv2.rate2" in no_decay_names
    assert "layer1.0.bn1.weight" in no_decay_names and "fc.bias" in no_decay_names
    assert "layer1.0.conv2.conv1.bias" in no_decay_names
    assert "layer1.0.conv2.dep_conv.weight" in decay_names and "fc.weight" in decay_names
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert len(decay_names) + len(no_decay_names) == len(list(model.parameters()))

    swin = create_model("swin_acmix_t", num_classes=10, img_size=32, width=12, heads=1, window=2, depths=[1, 1, 1, 1])
    _, nd = param_groups(swin, 0.05)
    snames = {id(p): n for n, p in swin.named_parameters()}
    assert any(snames[id(p)].endswith("relative_position_bias_table") for p in nd["params"])


def test_warmup_then_cosine():
    opt = make_optimizer(torch.nn.Linear(2, 2), "sgd", 0.1, 0.0)
    s = WarmupCosine(opt, lr=0.1, total_steps=10, warmup_steps=2, min_lr=0.0)
    lrs = [s.lr_at(i) for i in range(10)]
    assert lrs[0] == pytest.approx(0.05) and lrs[1] == pytest.approx(0.1)
    assert lrs[2] == pytest.approx(0.1)  # cosine starts at the peak
    assert lrs[6] == pytest.approx(0.05 * (1 + math.cos(math.pi * 4 / 8)))
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    assert s.apply() == pytest.approx(0.05) and opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_resume_refuses_a_changed_recipe(tmp_path):
    saved = TrainConfig(model="resnet_acmix26", data="d", out="o", lr=0.1, overrides={"width": 8}).resolved().to_dict()
    with pytest.raises(AcmixError, match="lr=0.2"):
        resumed_config(saved, {"lr": 0.2}, tmp_path / "last.pth")
    with pytest.raises(AcmixError, match="width=16"):
        resumed_config(saved, {"overrides": {"width": 16}}, tmp_path / "last.pth")
    cfg = resumed_config(saved, {"lr": 0.1, "workers": 0, "data": "elsewhere"}, tmp_path / "run" / "last.pth")
    assert cfg.data == "elsewhere" and cfg.workers == 0 and cfg.out == str(tmp_path / "run")


def test_config_checks():
    with pytest.raises(AcmixError, match="optimizer"):
        TrainConfig(model="m", data="d", opt="lamb").resolved()
    with pytest.raises(AcmixError, match="--epochs"):
        TrainConfig(model="m", data="d", epochs=0).resolved()
    cfg = TrainConfig(model="m", data="d", opt="adamw").resolved()
    assert cfg.lr == 1e-3 and cfg.weight_decay == 0.05 and cfg.out.endswith("m")
