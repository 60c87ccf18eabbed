"""The reference ACmix block against naive definitions of Eq. 9-13."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.acmix import ACmix, out_size, position_grid
from acmix_deploy.nn.shift import shift_kernel


def naive_attention(block: ACmix, q, k, v) -> torch.Tensor:
    """Per output pixel, per head: softmax_j(q . (k_j + pe_q - pe_j) / sqrt(d)) weighted sum of v_j,
    over the k_att x k_att window of the reflection-padded map (official SASA-style term)."""
    b, c, h, w = q.shape
    s, ka, hd, pad = block.stride, block.kernel_att, block.head_dim, block.padding_att
    pe = block.conv_p(position_grid(h, w))[0]  # (hd, h, w)

    def reflect(i: int, n: int) -> int:
        return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)

    out = torch.zeros(b, c, out_size(h, s), out_size(w, s))
    for n in range(b):
        for head in range(block.head):
            sl = slice(head * hd, (head + 1) * hd)
            for yo in range(out_size(h, s)):
                for xo in range(out_size(w, s)):
                    y, x = yo * s, xo * s
                    qv = q[n, sl, y, x] * hd**-0.5
                    logits, values = [], []
                    for dy in range(ka):
                        for dx in range(ka):
                            yy, xx = reflect(y + dy - pad, h), reflect(x + dx - pad, w)
                            logits.append(qv @ (k[n, sl, yy, xx] + pe[:, y, x] - pe[:, yy, xx]))
                            values.append(v[n, sl, yy, xx])
                    att = torch.stack(logits).softmax(0)
                    out[n, sl, yo, xo] = (att[:, None] * torch.stack(values)).sum(0)
    return out


@pytest.mark.parametrize("stride,h,w,k_att", [(1, 6, 7, 3), (2, 7, 5, 3), (1, 8, 8, 5), (2, 9, 8, 7)])
def test_attention_matches_naive_loop(stride, h, w, k_att):
    torch.manual_seed(0)
    block = ACmix(8, 8, k_att=k_att, head=2, stride=stride).eval()
    q, k, v = (torch.randn(2, 8, h, w) for _ in range(3))
    with torch.no_grad():
        got = block.attention(q, k, v)
        want = naive_attention(block, q, k, v)
    assert got.shape == (2, 8, out_size(h, stride), out_size(w, stride))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_path_with_shift_kernels_is_a_dense_kxk_conv(stride):
    """fc then one-hot shift-sum == one 3x3 conv over the stacked q/k/v channels."""
    torch.manual_seed(0)
    heads, width = 2, 8
    block = ACmix(width, width, k_att=3, head=heads, stride=stride).eval()
    hd = block.head_dim
    q, k, v = (torch.randn(1, width, 7, 6) for _ in range(3))
    fc = block.fc.weight[:, :, 0, 0]  # (9, 3*heads): piece c = (tensor c // heads, head c % heads)
    dense = torch.zeros(width, 3 * width, 3, 3)
    per_group = width // hd
    for o in range(width):
        d = o // per_group  # dep_conv group of output o = head-dim channel d
        for c in range(3 * heads):
            src = (c // heads) * width + (c % heads) * hd + d  # channel of cat(q, k, v)
            for i in range(9):
                dense[o, src, i // 3, i % 3] += fc[i, c]
    with torch.no_grad():
        got = block.conv_path(q, k, v)
        want = F.conv2d(torch.cat([q, k, v], 1), dense, stride=stride, padding=1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_three_shift_modes_agree(stride):
    torch.manual_seed(0)
    blocks = {m: ACmix(16, 16, k_att=3, head=4, stride=stride, shift=m).eval() for m in ("group", "fixed", "tensor")}
    state = blocks["group"].state_dict()
    for m in ("fixed", "tensor"):
        blocks[m].load_state_dict(state)
    x = torch.randn(2, 16, 9, 10)
    with torch.no_grad():
        outs = {m: b(x) for m, b in blocks.items()}
    torch.testing.assert_close(outs["fixed"], outs["group"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(outs["tensor"], outs["group"], rtol=1e-5, atol=1e-5)
    assert not blocks["fixed"].dep_conv.weight.requires_grad
    assert blocks["group"].dep_conv.weight.requires_grad


def test_fixed_and_tensor_refuse_learned_kernels():
    group = ACmix(8, 8, k_att=3, head=2)
    with torch.no_grad():
        group.dep_conv.weight.add_(0.01)
    for mode in ("fixed", "tensor"):
        with pytest.raises(AcmixError, match="one-hot"):
            ACmix(8, 8, k_att=3, head=2, shift=mode).load_state_dict(group.state_dict())


def test_shift_kernel_is_one_hot():
    k = shift_kernel(4, 3)
    assert k.shape == (4, 9, 3, 3)
    assert torch.equal(k.sum((2, 3)), torch.ones(4, 9))
    assert k[0, 0, 0, 0] == 1 and k[0, 4, 1, 1] == 1 and k[0, 8, 2, 2] == 1


def test_position_grid_is_float32_linspace():
    g = position_grid(3, 5)
    assert g.dtype == torch.float32 and g.shape == (1, 2, 3, 5)
    assert torch.equal(g[0, 0, 1], torch.linspace(-1, 1, 5)) and torch.equal(g[0, 1, :, 2], torch.linspace(-1, 1, 3))


def test_small_map_names_minimum():
    block = ACmix(8, 8, k_att=7, head=2)
    with pytest.raises(AcmixError, match="4 px"):
        block(torch.randn(1, 8, 3, 8))
