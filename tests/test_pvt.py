"""PVT v1 and PVT-ACmix: the block against the paper's equations, the deploy form against the
reference over random shapes, baseline -> ACmix fine-tuning loads, input-size rules."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from acmix_deploy.checkpoint import save_checkpoint
from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.pvt_attention import SRAttention
from acmix_deploy.nn.pvt_deploy import SRAttentionDeploy
from acmix_deploy.registry import create_model
from tests.conftest import run_cli, small_overrides


def _randomise(block: SRAttention, seed: int) -> SRAttention:
    """Every parameter random (biases, LayerNorm, fc, dep_conv beyond the one-hot init, rates)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.ndim > 1 else 0.5))
    return block.eval()


def _naive(block: SRAttention, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The paper's equations, restated with explicit unfolds and per-head loops (no code shared with
    the module): Eq. 12-13 attention over the spatially reduced keys, Eq. 9-11 conv path as fc over the
    3 * heads feature pieces, then a 3x3 shift-conv per head_dim channel, written as unfold + sum."""
    b, n, c = x.shape
    nh, hd, r = block.num_heads, block.head_dim, block.sr_ratio
    cls = n - h * w
    q = x @ block.q.weight.t() + block.q.bias
    src = x
    if r > 1:  # sr: a k = stride = r conv is a linear map of each r x r patch
        patches = F.unfold(x.transpose(1, 2).reshape(b, c, h, w), r, stride=r).transpose(1, 2)
        reduced = patches @ block.sr.weight.reshape(c, -1).t() + block.sr.bias
        src = F.layer_norm(reduced, (c,), block.norm.weight, block.norm.bias, block.norm.eps)
    kv = src @ block.kv.weight.t() + block.kv.bias
    k, v = kv[..., :c], kv[..., c:]
    heads = []
    for j in range(nh):
        sl = slice(j * hd, (j + 1) * hd)
        logits = torch.einsum("bnd,bmd->bnm", q[..., sl], k[..., sl]) / hd**0.5
        heads.append(torch.einsum("bnm,bmd->bnd", logits.softmax(-1), v[..., sl]))
    att = torch.cat(heads, -1) @ block.proj.weight.t() + block.proj.bias
    # conv path on the grid: q full resolution, k and v repeated r x r from the reduced grid
    def grid(t: torch.Tensor, side_h: int, side_w: int) -> torch.Tensor:
        t = t[:, t.shape[1] - side_h * side_w :].reshape(b, side_h, side_w, c)
        return t.repeat_interleave(r, 1).repeat_interleave(r, 2) if side_h != h else t
    pieces = [grid(t, h // r if t is not q else h, w // r if t is not q else w) for t in (q, k, v)]
    stacked = torch.stack([p[..., j * hd:(j + 1) * hd] for p in pieces for j in range(nh)], -1)  # (b,h,w,hd,3nh)
    fc_w = block.fc.weight.reshape(9, 3 * nh)
    f = torch.einsum("bhwdj,kj->bdkhw", stacked, fc_w) + block.fc.bias.reshape(1, 1, 9, 1, 1)  # (b,hd,9,h,w)
    taps = F.unfold(f.reshape(b, hd * 9, h, w), 3, padding=1).reshape(b, hd, 9, 9, h * w)  # (.., piece k, tap)
    weight = block.dep_conv.weight.reshape(hd, c // hd, 9, 9)  # (group d, out in group, k, tap)
    conv = torch.einsum("bdktn,dokt->bdon", taps, weight).reshape(b, c, h * w).transpose(1, 2)
    out = block.rate1 * att
    out[:, cls:] = out[:, cls:] + block.rate2 * conv
    return out


@pytest.mark.parametrize("h, w, r, heads, cls", [(9, 15, 3, 2, 0), (7, 5, 1, 3, 1), (6, 10, 2, 1, 0)])
def test_acmix_block_matches_the_paper_equations(h, w, r, heads, cls):
    torch.manual_seed(0)
    block = _randomise(SRAttention(heads * 4, heads, r, acmix=True), 1)
    x = torch.randn(2, cls + h * w, heads * 4)
    with torch.no_grad():
        torch.testing.assert_close(block(x, h, w), _naive(block, x, h, w), rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    heads=st.sampled_from([1, 2, 3, 5, 8]), head_dim=st.sampled_from([2, 4, 8]), r=st.sampled_from([1, 2, 4]),
    gh=st.integers(1, 3), gw=st.integers(1, 3), acmix=st.booleans(), batch=st.integers(1, 2), seed=st.integers(0, 99),
)
def test_deploy_attention_matches_reference(heads, head_dim, r, gh, gw, acmix, batch, seed):
    h, w = gh * r, gw * r
    cls = 1 if r == 1 and seed % 2 else 0
    dim = heads * head_dim
    block = _randomise(SRAttention(dim, heads, r, acmix=acmix), seed)
    deploy = SRAttentionDeploy(block, h, w).eval()
    x = torch.randn(batch, cls + h * w, dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), block(x, h, w), rtol=1e-4, atol=1e-5)


def test_baseline_state_dict_fine_tunes_into_acmix(tmp_path):
    small = small_overrides("pvt_t")
    torch.manual_seed(0)
    base = create_model("pvt_t", **small)
    path = tmp_path / "pvt_t.pth"
    torch.save(base.state_dict(), path)  # a plain state dict, as the original code writes
    with pytest.raises(AcmixError, match="missing"):
        create_model("pvt_acmix_t", checkpoint=path, **small)
    model = create_model("pvt_acmix_t", checkpoint=path, strict=False, **small)
    report = model.load_report
    new_keys = {f"block{i}.0.attn.{k}" for i in range(1, 5) for k in ("fc.weight", "fc.bias", "dep_conv.weight",
                                                                         "rate1", "rate2")}
    assert set(report.missing) == new_keys and not report.unexpected and not report.mismatched
    torch.testing.assert_close(model.block2[0].attn.kv.weight, base.block2[0].attn.kv.weight)


def test_pos_embed_checkpoint_of_another_size_is_resized(tmp_path):
    small = small_overrides("pvt_t")
    torch.manual_seed(0)
    model = create_model("pvt_t", **small)
    path = save_checkpoint(model, tmp_path / "m.pth")
    bigger = create_model("pvt_t", checkpoint=path, img_size=96)
    assert bigger.pos_embed1.shape == (1, 24 * 24, 8) and bigger.pos_embed4.shape == (1, 1 + 3 * 3, 64)
    assert any("pos_embed1 from a 16x16 to a 24x24 grid" in line for line in bigger.load_report.resized)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():  # resized at load == resized on the fly by the 64 px model (the original's way)
        torch.testing.assert_close(bigger(x), model(x), rtol=1e-5, atol=1e-5)


def test_input_size_rules():
    with pytest.raises(AcmixError, match="minimum of 32 px"):
        create_model("pvt_t", img_size=16)
    with pytest.raises(AcmixError, match="multiple of 32 px"):
        create_model("pvt_acmix_t", img_size=100)
    model = create_model("pvt_acmix_t", **small_overrides("pvt_acmix_t"))
    with pytest.raises(AcmixError, match="multiple of 32"):
        model(torch.randn(1, 3, 64, 80))
    base = create_model("pvt_t", **small_overrides("pvt_t"))  # the baseline runs at any size >= 32
    with torch.no_grad():
        assert base(torch.randn(1, 3, 70, 45)).shape == (1, 10)
    feats = model.forward_stages(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(8, 16, 16), (16, 8, 8), (40, 4, 4), (64, 2, 2)]


def test_cli_refuses_bad_sizes_in_one_line(tmp_path):
    for size, expect in ((100, "multiple of 32 px"), (16, "minimum of 32 px")):
        out = run_cli("export", "--model", "pvt_acmix_t",
                      "--img-size", str(size), "--output", str(tmp_path / "x.onnx"))
        assert out.code == 2 and expect in out.err and "Traceback" not in out.err
        assert len(out.err.strip().splitlines()) == 1, out.err
        assert not (tmp_path / "x.onnx").exists()
