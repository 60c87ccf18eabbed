"""SAN / SAN-ACmix: checkpoint keys, the block against the paper's equations, deploy form vs reference,
sizes, MACs."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from acmix_deploy.errors import AcmixError
from acmix_deploy.flops import model_stats
from acmix_deploy.nn.san import SAM
from acmix_deploy.nn.san_deploy import SAMDeploy, reflect_index
from acmix_deploy.registry import create_model
from tests.conftest import run_cli, small_overrides

SAN_MODELS = ["san10", "san15", "san19", "san_acmix10", "san_acmix15", "san_acmix19"]
# hszhao/SAN model/san.py, patchwise SAM: these keys and no others below `layerI.J.sam.`
SAM_KEYS = {f"conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")} | {
    f"conv_w.{i}.{p}" for i in (0, 3) for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
} | {"conv_w.2.weight", "conv_w.5.weight", "conv_w.5.bias"}
CONV_PATH_KEYS = {"fc.weight", "dep_conv.weight", "rate1", "rate2"}


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics, rates and learned (non-shift) dep_conv kernels."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g) * 0.3 + 1)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            if isinstance(m, SAM) and m.acmix:
                m.rate1.fill_(0.8)
                m.rate2.fill_(-0.6)
                m.dep_conv.weight.copy_(torch.randn(m.dep_conv.weight.shape, generator=g) * 0.3)


def test_state_dict_keys_follow_hszhao_san():
    with torch.device("meta"):
        model = create_model("san10")
    keys = set(model.state_dict())
    top = {k.split(".")[0] for k in keys}
    assert top == {"conv_in", "bn_in", "fc"} | {f"{p}{i}" for p in ("conv", "bn", "layer") for i in range(5)}
    assert "conv_in.bias" not in keys and "conv0.bias" not in keys and "layer4.0.conv.bias" in keys
    sam = {k[len("layer2.1.sam."):] for k in keys if k.startswith("layer2.1.sam.")}
    assert sam == SAM_KEYS
    assert sum(k.startswith("layer3.") for k in keys) == 4 * (len(SAM_KEYS) + 5 + 5 + 2)  # + bn1, bn2, conv
    with torch.device("meta"):
        acmix = create_model("san_acmix10")
    assert set(acmix.state_dict()) - keys == {f"{p}.sam.{k}" for p, _ in _blocks(acmix) for k in CONV_PATH_KEYS}


def _blocks(model):
    return [(n.rsplit(".sam", 1)[0], m) for n, m in model.named_modules() if isinstance(m, SAM)]


def test_san_acmix_loads_a_san_state_dict_non_strict(tmp_path):
    """Fine-tuning from a baseline: exactly the conv-path keys are missing, nothing unexpected; the CLI
    reports the same list."""
    torch.manual_seed(0)
    base = create_model("san10")
    path = tmp_path / "san10.pth"
    torch.save(base.state_dict(), path)
    model = create_model("san_acmix10", checkpoint=path, strict=False)
    expected = sorted(f"{p}.sam.{k}" for p, _ in _blocks(model) for k in CONV_PATH_KEYS)
    assert model.load_report.missing == expected and len(expected) == 40
    assert not model.load_report.unexpected and not model.load_report.mismatched
    assert torch.equal(model.layer2[0].sam.conv_w[2].weight, base.layer2[0].sam.conv_w[2].weight)
    with pytest.raises(AcmixError, match="40 missing, 0 unexpected"):
        create_model("san_acmix10", checkpoint=path)
    out = run_cli("info", "--model", "san_acmix10",
                  "--checkpoint", str(path), "--non-strict")
    assert out.code == 0, out.err
    # the partial-load report is a warning: stderr
    reported = sorted(line.split("missing: ", 1)[1].strip() for line in out.err.splitlines() if "missing: " in line)
    assert reported == expected


# --------------------------------------------------------------------------------------------------
# the block against the paper's equations, restated naively (unfold-based, explicit loops)
# --------------------------------------------------------------------------------------------------
def _conv1x1(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    y = torch.einsum("oc,nchw->nohw", conv.weight[:, :, 0, 0], x)
    return y if conv.bias is None else y + conv.bias.view(1, -1, 1, 1)


def _bn(bn: torch.nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - bn.running_mean.view(shape)) / (bn.running_var.view(shape) + bn.eps).sqrt() * bn.weight.view(
        shape) + bn.bias.view(shape)


def naive_san_acmix(sam: SAM, x: torch.Tensor) -> torch.Tensor:
    """SAN patchwise SA (Zhao et al. Eq. 4, weights from [x1, patch(x2)]), plus ACmix's conv path
    (Eq. 12-13: fc over the pieces, then shifts), as separate loops."""
    n, _, h, w = x.shape
    k, p, rel, mid, cw = sam.kernel_size, sam.kernel_size // 2, sam.rel_planes, sam.out_planes, sam.weight_channels
    x1, x2, x3 = (_conv1x1(c, x) for c in (sam.conv1, sam.conv2, sam.conv3))
    patch = F.unfold(F.pad(x2, [p] * 4, mode="reflect"), k)  # (n, rel * k^2, hw), channel ch * k^2 + offset
    feat = torch.cat([x1.reshape(n, rel, h * w), patch], 1)
    hidden = torch.relu(_bn(sam.conv_w[3], torch.einsum("oc,ncl->nol", sam.conv_w[2].weight[:, :, 0, 0],
                                                          torch.relu(_bn(sam.conv_w[0], feat)))))
    wts = torch.einsum("oc,ncl->nol", sam.conv_w[5].weight[:, :, 0, 0], hidden) + sam.conv_w[5].bias.view(1, -1, 1)
    wts = wts.view(n, cw, k * k, h * w)
    values = F.unfold(F.pad(x3, [p] * 4, mode="reflect"), k).view(n, mid, k * k, h * w)
    att = torch.stack([(wts[:, c % cw] * values[:, c]).sum(1) for c in range(mid)], 1).view(n, mid, h, w)
    if not sam.acmix:
        return att
    pieces = [x1, x2] + [x3[:, j * rel : (j + 1) * rel] for j in range(mid // rel)]
    fc = sam.fc.weight[:, :, 0, 0]
    maps = [sum(fc[j, t] * pieces[t] for t in range(len(pieces))) + (0 if sam.fc.bias is None else sam.fc.bias[j])
            for j in range(9)]
    dep, per_group = sam.dep_conv.weight, mid // rel
    conv = torch.zeros(n, mid, h, w, dtype=x.dtype)
    for o in range(mid):
        d = o // per_group
        for j in range(9):
            shifted = F.pad(maps[j][:, d], [1, 1, 1, 1])
            for a in range(3):
                for b in range(3):
                    conv[:, o] += dep[o, j, a, b] * shifted[:, a : a + h, b : b + w]
    return sam.rate1 * att + sam.rate2 * conv


@pytest.mark.parametrize("k, h, w, fc_bias", [(3, 5, 9, False), (5, 7, 11, True), (7, 9, 13, False)])
def test_san_acmix_block_matches_naive_equations(k, h, w, fc_bias):
    torch.manual_seed(k)
    sam = SAM(12, 4, 16, 8, k, acmix=True, fc_bias=fc_bias).double().eval()
    _randomise(sam, k)
    x = torch.randn(2, 12, h, w, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(sam(x), naive_san_acmix(sam, x), rtol=1e-10, atol=1e-10)
        sam.acmix = False  # the plain SAN module: the same equations without the conv path
        torch.testing.assert_close(sam(x), naive_san_acmix(sam, x), rtol=1e-10, atol=1e-10)


def test_reflect_index_is_pytorch_reflection():
    x = torch.arange(5 * 7, dtype=torch.float64).view(1, 1, 5, 7)
    ref = F.unfold(F.pad(x, [2] * 4, mode="reflect"), 5).view(25, 35)
    assert torch.equal(x.view(-1)[reflect_index(5, 7, 5)].view(25, 35), ref)


@settings(max_examples=24, deadline=None, derandomize=True)
@given(
    k=st.sampled_from([3, 5, 7]), h=st.integers(4, 12), w=st.integers(4, 12), rel=st.sampled_from([2, 4]),
    pieces=st.sampled_from([2, 4]), share=st.sampled_from([2, 4, 8]), acmix=st.booleans(),
    form=st.sampled_from(["gather", "slices"]), batch=st.integers(1, 2),
)
def test_deploy_form_matches_reference(k, h, w, rel, pieces, share, acmix, form, batch):
    """Random SAM shapes (kernel, odd / even / non-square maps, widths, sharing), both deploy forms."""
    h, w = max(h, k // 2 + 1), max(w, k // 2 + 1)
    mid = rel * pieces
    sam = SAM(8, rel, mid, min(share, mid), k, acmix=acmix, fc_bias=acmix and k == 5).double().eval()
    _randomise(sam, h * 31 + w)
    deploy = SAMDeploy(sam, h, w, form=form)
    x = torch.randn(batch, 8, h, w, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), sam(x), rtol=1e-10, atol=1e-10)


def test_whole_model_deploy_form_matches_reference():
    from acmix_deploy.nn.deploy import switch_to_deploy

    torch.manual_seed(0)
    model = create_model("san_acmix10", **{**small_overrides("san_acmix10"), "img_size": 67}).double().eval()
    _randomise(model)
    x = torch.randn(1, 3, 67, 67, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        for form in ("gather", "slices"):
            torch.testing.assert_close(switch_to_deploy(model, 67, san_form=form)(x), ref, rtol=1e-9, atol=1e-12)
    with pytest.raises(AcmixError, match="conv_form"):
        switch_to_deploy(model, 67, conv_form="dense")


# --------------------------------------------------------------------------------------------------
# sizes and MACs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SAN_MODELS)
def test_below_minimum_size_names_it(name):
    with torch.device("meta"), pytest.raises(AcmixError, match="below the minimum of 128 px"):
        create_model(name, img_size=127)
    with torch.device("meta"):
        assert create_model(name, img_size=128).min_size == 128
        assert create_model(name, img_size=64, kernels=[3, 3, 3, 3, 3]).min_size == 64


def test_below_minimum_size_cli_one_line_exit_2(tmp_path):
    out = run_cli("export", "--model", "san_acmix10",
                  "--img-size", "100", "--output", str(tmp_path / "x.onnx"))
    assert out.code == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "minimum of 128 px" in lines[0] and "Traceback" not in out.err
    assert not list(tmp_path.iterdir())


def test_macs_stage_split_and_conv_path_cost():
    base, acmix = model_stats("san10"), model_stats("san_acmix10")
    assert len(base.blocks) == len(acmix.blocks) == 10
    assert base.stage1_macs == acmix.stage1_macs > 0
    # conv path per SAM: fc 6 -> 9 over rel channels and dep_conv (9 inputs per output) at the SAM's map
    extra = 0
    for c, n, k, side in zip((64, 256, 512, 1024, 2048), (2, 1, 2, 4, 1), (3, 7, 7, 7, 7), (112, 56, 28, 14, 7)):
        extra += n * (54 * c // 16 + 81 * c // 4) * side * side
    assert acmix.total_macs - base.total_macs == extra
    assert abs(base.total_macs / 1.791e9 - 1) < 1e-3 and abs(acmix.total_macs / 1.888e9 - 1) < 1e-3
