"""Registry, model zoo cards, parameter counts, forward / backward of every registered model."""

from __future__ import annotations

import pytest
import torch

from acmix_deploy.errors import AcmixError
from acmix_deploy.flops import model_stats
from acmix_deploy.registry import create_model, get_card, list_models
from tests.conftest import small_overrides

# Official code, random init, 1000 classes (shared/DESIGN.md section 1); baselines: torchvision / Swin.
PARAMS = {
    "resnet_acmix26": 10_487_816,
    "resnet_acmix38": 14_410_896,
    "resnet_acmix50": 18_333_976,
    "swin_acmix_t": 28_649_908,
    "swin_acmix_s": 50_345_080,
    "resnet26": 13_696_552,
    "resnet38": 19_626_792,
    "resnet50": 25_557_032,
    "swin_t": 28_288_354,
    "swin_s": 49_606_258,
    # shared/SAN_PVT.md: PVT v1 and PVT-ACmix (our definition)
    "pvt_t": 13_229_288,
    "pvt_s": 24_485_864,
    "pvt_acmix_t": 13_396_128,
    "pvt_acmix_s": 24_824_755,
    # SAN (patchwise) and our SAN-ACmix: shared/SAN_PVT.md
    "san10": 11_841_124,
    "san15": 16_181_310,
    "san19": 20_518_470,
    "san_acmix10": 11_994_612,
    "san_acmix15": 16_414_134,
    "san_acmix19": 20_829_278,
}


def test_registry_lists_every_counted_model():
    assert list_models() == sorted(PARAMS)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts(name):
    """The count matches the official code's, and the card's counted fields (list-models prints them
    without building a model) match the model as built: params and MACs at the card's input size."""
    stats = model_stats(name)  # builds the model on the meta device and counts its MACs
    assert stats.params == PARAMS[name]
    counted = get_card(name).counted
    assert counted == {"params_m": round(stats.params / 1e6, 2), "gmacs": round(stats.total_macs / 1e9, 2)}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_forward_backward_small(name):
    torch.manual_seed(0)
    model = create_model(name, **small_overrides(name)).train()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if get_card(name).is_acmix:
        assert any(float(p.grad.abs().sum()) > 0 for n, p in model.named_parameters() if n.endswith("rate1"))


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_card_min_size_matches_model(name):
    with torch.device("meta"):
        model = create_model(name)
    assert model.card.min_size == get_card(name).min_size


def test_macs_match_official_counts():
    assert abs(model_stats("resnet_acmix50").conv_matmul_macs / 3.37e9 - 1) < 0.01
    assert abs(model_stats("resnet_acmix50").total_macs / 3.6e9 - 1) < 0.10
    assert abs(model_stats("swin_acmix_t").total_macs / 4.65e9 - 1) < 0.01
    stats = model_stats("resnet_acmix26")
    assert len(stats.blocks) == 8 and stats.stage1_macs > stats.stage2_macs > 0


def test_min_size_error_names_minimum():
    with pytest.raises(AcmixError, match="minimum of 49 px"):
        create_model("resnet_acmix26", img_size=32)
    model = create_model("resnet_acmix26", num_classes=3)
    with pytest.raises(AcmixError, match="49 px"):
        model(torch.randn(1, 3, 40, 64))


def test_odd_sizes_and_stride_two_run():
    model = create_model("resnet_acmix26", width=8, num_classes=5, img_size=49)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 49, 67)).shape == (1, 5)


def test_swin_rebuilds_buffers_for_other_sizes():
    model = create_model("swin_acmix_t", img_size=448, width=32, heads=2)
    block = model.layers[0].blocks[1]
    assert block.attn_mask.shape == (16 * 16, 49, 49)
    with pytest.raises(AcmixError, match="multiple of"):
        create_model("swin_t", img_size=100)


def test_unknown_model_and_override():
    with pytest.raises(AcmixError, match="valid models: .*resnet26, "):
        create_model("nope")
    with pytest.raises(AcmixError, match="unknown override"):
        create_model("resnet26", window=3)


def test_features_are_four_stages():
    model = create_model("resnet_acmix26", **small_overrides("resnet_acmix26"))
    feats = model.forward_stages(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == model.feature_channels
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]


def test_families_register_themselves():
    from acmix_deploy.registry import family, list_families

    assert list_families() == ["pvt", "resnet", "san", "swin"]
    for name in list_families():
        fam = family(name)
        assert fam.name == name and {"num_classes", "img_size", "shift", "in_chans"} <= set(fam.overrides)
        assert fam.deploy is not None and fam.structure is not None and fam.structure.stage1
    for bad in ("nope", "backbone"):  # archs/backbone.py exists but registers no family
        with pytest.raises(AcmixError, match=f"unknown model family '{bad}'"):
            family(bad)


def test_a_new_family_needs_no_central_edit(tmp_path, monkeypatch):
    """A family registered from outside acmix_deploy plus a card in a zoo folder: create_model builds
    it with its overrides and switch_to_deploy uses its deploy switch (no table or switch edited)."""
    import torch.nn as nn

    from acmix_deploy import registry
    from acmix_deploy.nn.deploy import switch_to_deploy

    class Tiny(nn.Module):
        def __init__(self, num_classes: int, img_size: int, width: int = 4):
            super().__init__()
            self.fc = nn.Linear(width, num_classes)

    def deploy(model: nn.Module, img_size: int) -> nn.Module:
        model.deployed_at = img_size
        return model

    registry.register_family(registry.Family(
        name="tinyfam", network=Tiny, overrides={"width": "width", "num_classes": "num_classes"}, deploy=deploy))
    base = (registry.cards_dir() / "resnet_acmix50.toml").read_text()
    head = base.split("[args]")[0].replace("resnet_acmix50", "tiny1").replace('arch = "resnet"', 'arch = "tinyfam"')
    (tmp_path / "tiny1.toml").write_text(head + "[args]\nwidth = 6\n\n[input]" + base.split("[input]")[1])
    monkeypatch.setenv("ACMIX_DEPLOY_ZOO", str(tmp_path))
    registry._cards.cache_clear()
    try:
        model = registry.create_model("tiny1", width=3)
        assert isinstance(model, Tiny) and model.fc.in_features == 3 and model.fc.out_features == 1000
        assert switch_to_deploy(model, 32).deployed_at == 32 and not hasattr(model, "deployed_at")
        with pytest.raises(AcmixError, match="unknown override"):
            registry.create_model("tiny1", k_att=3)
    finally:
        registry._cards.cache_clear()
