"""Deploy forms compute the reference function (torch level, tight tolerance)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.acmix import ACmix, out_size
from acmix_deploy.nn.deploy import ACmixDeploy, switch_to_deploy
from acmix_deploy.nn.local_attention import LocalAttention, choose_block, halo_geometry
from acmix_deploy.registry import create_model
from tests.conftest import small_overrides

RTOL = 2e-5  # one block, relative to max |reference|
MODEL_RTOL = 1e-4  # whole random-init networks amplify rounding: the project's fp32 parity tolerance


def randomize(block: ACmix, rate1: float = 0.7, rate2: float = -1.3) -> ACmix:
    """Non-trivial weights everywhere (biases, positions, learned dep_conv unless frozen)."""
    with torch.no_grad():
        for p in block.parameters():
            if p.requires_grad:
                p.normal_(0, 0.3)
        for conv in (block.conv1, block.conv2, block.conv3):
            conv.bias.normal_()
        block.rate1.fill_(rate1)
        block.rate2.fill_(rate2)
    return block.eval()


def assert_same(ref: torch.Tensor, got: torch.Tensor, rtol: float = RTOL) -> None:
    assert got.shape == ref.shape
    err = float((ref - got).abs().max() / ref.abs().max())
    assert err < rtol, f"max |diff| / max |ref| = {err:.2e}"


def run_both(block: ACmix, h: int, w: int, **options) -> ACmixDeploy:
    torch.manual_seed(1)
    x = torch.randn(2, block.in_planes, h, w)
    dep = ACmixDeploy(block, h, w, **options).eval()
    with torch.no_grad():
        assert_same(block(x), dep(x))
    return dep


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k_att", [3, 5, 7])
@pytest.mark.parametrize("h,w", [(13, 11), (9, 16), (8, 8)])
def test_deploy_block_matches_reference(stride, k_att, h, w):
    torch.manual_seed(0)
    block = randomize(ACmix(12, 16, k_att=k_att, head=4, stride=stride))
    run_both(block, h, w)


@pytest.mark.parametrize("shift", ["group", "fixed", "tensor"])
@pytest.mark.parametrize("conv_form", ["split", "grouped", "dense"])
@pytest.mark.parametrize("stride", [1, 2])
def test_every_conv_form_and_shift_mode(shift, conv_form, stride):
    torch.manual_seed(0)
    block = randomize(ACmix(8, 16, k_att=5, head=4, stride=stride, shift=shift))
    dep = run_both(block, 11, 10, conv_form=conv_form)
    assert dep.conv_form == ("tensor" if shift == "tensor" else conv_form)


@pytest.mark.parametrize("block_size,mode", [(1, "reflect"), (2, "reflect"), (3, "reflect"), (5, "reflect"),
                                             (2, "unique"), (3, "unique"), (4, "unique"), (11, "unique")])
@pytest.mark.parametrize("stride", [1, 2])
def test_any_block_size_and_halo_mode(block_size, mode, stride):
    """Sizes that blocks do not divide (padded query grid, cropped), both ways to honour reflection."""
    torch.manual_seed(0)
    block = randomize(ACmix(8, 16, k_att=7, head=4, stride=stride))
    dep = run_both(block, 11, 9, attn_block=block_size, attn_mode=mode)
    assert dep.attention.block == block_size and dep.attention.mode == mode


@pytest.mark.parametrize("shift,conv_form", [("group", "grouped"), ("group", "split"), ("tensor", "grouped")])
@pytest.mark.parametrize("stride", [1, 2])
def test_zero_rate1_drops_the_attention_path(shift, conv_form, stride):
    block = randomize(ACmix(8, 16, k_att=3, head=4, stride=stride, shift=shift), rate1=0.0)
    dep = run_both(block, 8, 8, conv_form=conv_form)
    assert not hasattr(dep, "attention")


def test_folds_are_exact_in_structure():
    """Positional encoding is a constant (no conv_p), q carries the scale, v carries rate1."""
    torch.manual_seed(0)
    block = randomize(ACmix(8, 16, k_att=3, head=4))
    dep = ACmixDeploy(block, 8, 8, conv_form="split")
    names = {n for n, _ in dep.named_modules()}
    assert "conv_p" not in names and "attention" in names and "conv_path.fc" in names
    assert dep.attention.key_offset.shape == (64, 4)  # (H*W, head_dim): pe subtracted from keys only
    order = torch.arange(16).reshape(4, 4).t().reshape(-1)  # dim-major stage I for the split conv path
    torch.testing.assert_close(dep.conv1.weight, block.conv1.weight[order] * 4**-0.5)
    torch.testing.assert_close(dep.conv3.bias, block.conv3.bias[order] * 0.7)


def test_halo_masks_cover_exactly_each_window():
    """Every valid query sees exactly k^2 window slots (with multiplicity) and nothing else."""
    for (h, w, k, s, b, mode) in [(13, 11, 7, 1, 4, "reflect"), (13, 11, 7, 2, 3, "reflect"),
                                 (14, 14, 7, 1, 7, "unique"), (7, 7, 7, 1, 7, "unique"), (9, 5, 5, 2, 2, "unique")]:
        g = halo_geometry(h, w, k, s, b, mode)
        counts = np.exp(g.mask.astype(np.float64))  # multiplicity per slot (0 outside the window)
        counts = np.broadcast_to(counts, (g.n_blocks,) + counts.shape[1:])
        rows = counts.reshape(-1, g.halo_size)[g.output_index]
        np.testing.assert_allclose(rows.sum(-1), k * k, rtol=1e-6)
        assert g.key_index.min() >= 0 and g.key_index.max() < h * w
        assert len(g.output_index) == out_size(h, s) * out_size(w, s)


def test_block_policy_and_small_halos():
    assert choose_block(56, 56, 7, 1) == (4, "reflect")
    assert choose_block(7, 7, 7, 1) == (7, "unique")
    g = halo_geometry(14, 14, 7, 1, *choose_block(14, 14, 7, 1))
    assert g.halo_size == 100  # 10 x 10 halos: clipped by the borders, not 13 x 13
    assert halo_geometry(7, 7, 7, 1, 7, "unique").halo_size == 49


def test_too_small_maps_and_bad_modes_are_user_errors():
    with pytest.raises(AcmixError):
        halo_geometry(3, 3, 7, 1, 2, "reflect")
    with pytest.raises(AcmixError):
        LocalAttention(2, 4, 8, 8, 3, mode="mirror")
    with pytest.raises(AcmixError):
        ACmixDeploy(ACmix(8, 8, k_att=3, head=2), 8, 8, conv_form="sparse")


@pytest.mark.parametrize("name", ["resnet_acmix26", "swin_acmix_t", "swin_t", "resnet26"])
def test_whole_models_match_and_never_roll(name, monkeypatch):
    torch.manual_seed(0)
    ov = small_overrides(name)
    model = create_model(name, **ov)
    with torch.no_grad():  # learned-looking ACmix parameters, not the init values
        for pname, p in model.named_parameters():
            if any(t in pname for t in ("rate", "dep_conv", "fc.bias", "relative_position", "qkv.bias", "proj.bias")):
                p.normal_(0, 0.5)
    deployed = switch_to_deploy(model, ov["img_size"])
    x = torch.randn(2, 3, ov["img_size"], ov["img_size"])
    with torch.no_grad():
        ref, ref_stages = model(x), model.forward_stages(x)

        def no_roll(*args, **kwargs):
            raise AssertionError("torch.roll in a deploy form")

        monkeypatch.setattr(torch, "roll", no_roll)
        got, got_stages = deployed(x), deployed.forward_stages(x)
    assert_same(ref, got, MODEL_RTOL)
    for a, b in zip(ref_stages, got_stages):
        assert_same(a, b, MODEL_RTOL)


def test_reference_model_is_untouched():
    model = create_model("resnet_acmix26", **small_overrides("resnet_acmix26"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    switch_to_deploy(model, 64)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name,conv_form", [("resnet_acmix26", "grouped"), ("resnet_acmix26", "dense"),
                                            ("swin_acmix_t", None)])
def test_folds_are_exact_in_float64(name, conv_form):
    """In float64 the deploy form equals the reference to ~1e-12: every fold is exact algebra, the
    float32 differences are rounding only."""
    torch.manual_seed(0)
    ov = small_overrides(name)
    model = create_model(name, **ov).double()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if any(t in pname for t in ("rate", "dep_conv", "fc.bias", "relative_position", "conv_p", "qkv.bias",
                                        "proj.bias")):
                p.normal_(0, 0.5)
    options = {"conv_form": conv_form} if conv_form else {}
    deployed = switch_to_deploy(model, ov["img_size"], **options)
    if name.startswith("swin"):  # both Swin conv-path forms: fc folded into dep_conv (3 * heads <= 9) or not
        assert [layer.blocks[1].attn.conv_path.fold_fc for layer in deployed.layers[:2]] == [True, False]
    x = torch.randn(2, 3, ov["img_size"], ov["img_size"], dtype=torch.float64)
    with torch.no_grad():
        for ref, got in zip(model.forward_stages(x), deployed.forward_stages(x)):
            assert got.dtype == torch.float64
            assert_same(ref, got, rtol=1e-11)


@pytest.mark.parametrize("shift", ["fixed", "tensor"])
def test_swin_shift_modes(shift):
    """Swin-ACmix with frozen one-hot shifts: grouped conv (fixed) or explicit shifted slices (tensor)."""
    torch.manual_seed(0)
    ov = small_overrides("swin_acmix_t")
    model = create_model("swin_acmix_t", shift=shift, **ov)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if any(t in pname for t in ("rate", "fc.", "qkv.bias", "proj.bias")):
                p.normal_(0, 0.5)
    deployed = switch_to_deploy(model, ov["img_size"])
    conv_path = deployed.layers[0].blocks[1].attn.conv_path
    assert conv_path.explicit_shift == (shift == "tensor") and hasattr(conv_path, "dep_conv") == (shift != "tensor")
    x = torch.randn(2, 3, ov["img_size"], ov["img_size"])
    with torch.no_grad():
        assert_same(model(x), deployed(x), MODEL_RTOL)
