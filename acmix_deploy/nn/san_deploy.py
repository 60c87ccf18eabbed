"""Deploy form of SAN's patchwise SAM (and SAN-ACmix's): same outputs as nn/san.py, shaped for engines.

No Unfold / Im2Col, no Pad, no float64, no data-dependent shapes. The K x K reflection-padded
neighbourhood is one constant index tensor into the flattened H*W map (`reflect_index`: reflection
folded into the indices), so a neighbourhood is a single Gather. Folds, all exact in real arithmetic
(computed in float64, stored in the reference's dtype):

* the weight network's first BatchNorm is a per-(channel, offset) scale and shift on the gathered keys
  (it cannot move before the gather: each offset has its own statistics), its second BatchNorm folds
  into the first 1x1 conv;
* rate1 folds into the weight network's last conv (the aggregation is linear in the weights);
* stage I's three 1x1 convs are one conv (`qkv`) whose output is split;
* SAN-ACmix conv path: fc and dep_conv compose into one dense, block-sparse 3x3 conv over the `qkv`
  output (rate2 folded in); see `ConvPath` for why not the grouped convs.

Two forms of each neighbourhood op (`form`), measured in benchmarks/san_latency.py:

* ``gather``: one constant-index Gather for the keys and one for the values; the aggregation
  is Mul + ReduceSum over the K^2 axis. Largest tensor: the gathered values, mid * K^2 * H * W.
* ``slices`` (default): the K^2 neighbours as static Slices of one Gather-padded map (reflection by constant
  indices too); keys concatenated, the aggregation accumulated offset by offset (K^2 Mul + Add), so the
  values are never materialised K^2 times.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.san import K_CONV, SAM

SAN_FORMS = ("gather", "slices")
DEFAULT_SAN_FORM = "slices"  # 3x faster than gather in ONNX Runtime CPU (benchmarks/san_latency.py)


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def reflect_index(h: int, w: int, k: int) -> torch.Tensor:
    """(k*k*h*w,) int64: flat position in an h x w map of offset (kh, kw) of pixel (y, x), reflection
    padded by k // 2 (PyTorch's 'reflect', edge not repeated); order [kh * k + kw][y * w + x]."""
    p = k // 2
    ys, xs = torch.arange(h), torch.arange(w)
    rows = torch.stack([_reflect(ys + d - p, h) for d in range(k)])  # (k, h)
    cols = torch.stack([_reflect(xs + d - p, w) for d in range(k)])  # (k, w)
    flat = rows[:, None, :, None] * w + cols[None, :, None, :]  # (kh, kw, h, w)
    return flat.reshape(-1)


def padded_index(h: int, w: int, k: int) -> torch.Tensor:
    """(hp*wp,) int64: the reflection-padded (h + 2p) x (w + 2p) map as flat positions of the h x w map."""
    p = k // 2
    rows = _reflect(torch.arange(-p, h + p), h)
    cols = _reflect(torch.arange(-p, w + p), w)
    return (rows[:, None] * w + cols[None, :]).reshape(-1)


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight.detach().double() / (bn.running_var.detach().double() + bn.eps).sqrt()
    return scale, bn.bias.detach().double() - bn.running_mean.detach().double() * scale


def _conv(weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype, groups: int = 1) -> nn.Conv2d:
    k = weight.shape[-1]
    conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], k, padding=k // 2, groups=groups,
                     bias=bias is not None, dtype=dtype)
    conv.weight.data.copy_(weight)
    if bias is not None:
        conv.bias.data.copy_(bias)
    return conv


class WeightNet(nn.Module):
    """The patchwise weight network on gathered keys -> rate1-scaled weights: (N, cw, K^2 * HW) for
    `gather`, offset-major (N, K^2 * cw, H, W) for `slices`."""

    def __init__(self, sam: SAM, height: int, width: int, form: str, index: torch.Tensor):
        super().__init__()
        dtype = sam.conv1.weight.dtype
        k, rel = sam.kernel_size, sam.rel_planes
        self.height, self.width, self.form, self.k, self.rel, self.cw = height, width, form, k, rel, sam.weight_channels
        self.register_buffer("index", index, persistent=False)
        bn0, conv_a, bn1, conv_b = sam.conv_w[0], sam.conv_w[2], sam.conv_w[3], sam.conv_w[5]
        # slices: the keys are concatenated offset-major (channel kpos * rel + ch) and the weights come out
        # offset-major (kpos * cw + c), so every slice and Concat works on whole channel blocks
        cols = torch.arange(rel * k * k).view(rel, k * k)
        keys = cols.t().reshape(-1) if form == "slices" else cols.reshape(-1)
        outs = torch.arange(k * k * self.cw).view(self.cw, k * k)
        outs = outs.t().reshape(-1) if form == "slices" else outs.reshape(-1)
        scale, shift = _bn_affine(bn0)
        self.register_buffer("scale1", scale[:rel].reshape(rel, 1, 1).to(dtype), persistent=False)
        self.register_buffer("shift1", shift[:rel].reshape(rel, 1, 1).to(dtype), persistent=False)
        self.register_buffer("scale2", scale[rel:][keys].reshape(-1, 1, 1).to(dtype), persistent=False)
        self.register_buffer("shift2", shift[rel:][keys].reshape(-1, 1, 1).to(dtype), persistent=False)
        s_b, t_b = _bn_affine(bn1)
        w_a = conv_a.weight.detach().double() * s_b[:, None, None, None]
        w_a = torch.cat([w_a[:, :rel], w_a[:, rel:][:, keys]], 1)
        self.weight_a = _conv(w_a, t_b, dtype)
        rate1 = sam.rate1.detach().double() if sam.acmix else torch.ones((), dtype=torch.float64)
        w_b, b_b = conv_b.weight.detach().double() * rate1, conv_b.bias.detach().double() * rate1
        self.weight_b = _conv(w_b[outs], b_b[outs], dtype)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        n, h, w, k = x1.shape[0], self.height, self.width, self.k
        flat = x2.reshape(n, self.rel, h * w).index_select(2, self.index)
        if self.form == "gather":
            patch = flat.reshape(n, self.rel * k * k, h, w)
        else:
            padded = flat.reshape(n, self.rel, h + k - 1, w + k - 1)
            patch = torch.cat([padded[:, :, i // k : i // k + h, i % k : i % k + w] for i in range(k * k)], 1)
        a1 = F.relu(x1 * self.scale1 + self.shift1)
        a2 = F.relu(patch * self.scale2 + self.shift2)
        hidden = F.relu(self.weight_a(torch.cat([a1, a2], 1)))
        if self.form == "slices":
            return self.weight_b(hidden)  # (N, K^2 * cw, H, W), offset-major
        return self.weight_b(hidden).reshape(n, self.cw, k * k * h * w)


class Aggregation(nn.Module):
    """SAN's aggregation with interleaved weight sharing, on gathered (or sliced) values."""

    def __init__(self, sam: SAM, height: int, width: int, form: str, index: torch.Tensor):
        super().__init__()
        self.height, self.width, self.form, self.k = height, width, form, sam.kernel_size
        self.mid, self.cw = sam.out_planes, sam.weight_channels
        self.register_buffer("index", index, persistent=False)

    def forward(self, x3: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:
        n, h, w, k, cw = x3.shape[0], self.height, self.width, self.k, self.cw
        groups = self.mid // cw
        flat = x3.reshape(n, self.mid, h * w).index_select(2, self.index)
        if self.form == "gather":
            cols = flat.reshape(n, groups, cw, k * k, h * w)
            return (cols * wt.reshape(n, 1, cw, k * k, h * w)).sum(3).reshape(n, self.mid, h, w)
        padded = flat.reshape(n, groups, cw, h + k - 1, w + k - 1)
        wt = wt.reshape(n, 1, k * k * cw, h, w)  # offset-major: offset i is channels [i * cw, (i + 1) * cw)
        out = padded[:, :, :, 0:h, 0:w] * wt[:, :, 0:cw]
        for i in range(1, k * k):
            out = out + padded[:, :, :, i // k : i // k + h, i % k : i % k + w] * wt[:, :, i * cw : (i + 1) * cw]
        return out.reshape(n, self.mid, h, w)


class ConvPath(nn.Module):
    """SAN-ACmix conv path as one dense 3x3 conv over stage I's output [x1, x2, x3] (6 * rel -> mid).

    fc (pieces -> 9) and dep_conv (groups = rel) are linear, so their composition is a 3x3 conv whose
    output o reads channel d = o // (mid / rel) of every piece: a block-sparse dense kernel, rate2
    folded in. No Transpose to the piece-channel-major stack, and ONNX Runtime's dense conv beats its
    small-group grouped convs (the split fc + dep_conv form ran the whole san_acmix10 at 2x san10).
    An fc bias becomes a constant map (the bias seen through dep_conv's zero padding)."""

    def __init__(self, sam: SAM, height: int, width: int):
        super().__init__()
        dtype, rel, mid, pieces = sam.conv1.weight.dtype, sam.rel_planes, sam.out_planes, sam.pieces
        dep = sam.dep_conv.weight.detach().double() * sam.rate2.detach().double()  # (mid, 9, 3, 3)
        fc = sam.fc.weight.detach().double().reshape(K_CONV * K_CONV, pieces)
        per_piece = torch.einsum("ojab,jt->otab", dep, fc)  # (mid, pieces, 3, 3)
        weight = torch.zeros(mid, pieces * rel, K_CONV, K_CONV, dtype=torch.float64)
        d = torch.arange(mid) // (mid // rel)
        for t in range(pieces):
            weight[torch.arange(mid), t * rel + d] = per_piece[:, t]
        self.conv = _conv(weight, None, dtype)
        self.has_bias = sam.fc.bias is not None
        if self.has_bias:
            f = sam.fc.bias.detach().double().repeat(rel).view(1, -1, 1, 1).expand(1, -1, height, width)
            self.register_buffer("bias_map", F.conv2d(f, dep, None, 1, 1, 1, rel).to(dtype), persistent=False)

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        out = self.conv(qkv)
        return out + self.bias_map if self.has_bias else out


class SAMDeploy(nn.Module):
    """One SAM at a fixed map size: stage I (conv1-3 fused: qkv), weight_net, aggregation, conv_path.
    `form` picks the neighbourhood implementation (SAN_FORMS)."""

    def __init__(self, sam: SAM, height: int, width: int, form: str = DEFAULT_SAN_FORM):
        super().__init__()
        if form not in SAN_FORMS:
            raise AcmixError(f"unknown SAN deploy form {form!r}; choose one of {', '.join(SAN_FORMS)}")
        if min(height, width) < sam.min_input:
            raise AcmixError(f"SAM map {height}x{width} is below the {sam.min_input} px reflection padding needs")
        dtype, k = sam.conv1.weight.dtype, sam.kernel_size
        self.height, self.width, self.form, self.k, self.acmix = height, width, form, k, sam.acmix
        self.split = [sam.rel_planes, sam.rel_planes, sam.out_planes]
        projections = (sam.conv1, sam.conv2, sam.conv3)  # stage I as one conv: [x1, x2, x3]
        self.qkv = _conv(torch.cat([c.weight.detach() for c in projections]),
                         torch.cat([c.bias.detach() for c in projections]), dtype)
        index = reflect_index(height, width, k) if form == "gather" else padded_index(height, width, k)
        self.weight_net = WeightNet(sam, height, width, form, index)
        self.aggregation = Aggregation(sam, height, width, form, index)
        if sam.acmix:
            self.conv_path = ConvPath(sam, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.height, self.width):
            raise AcmixError(f"deploy SAM built for {self.height}x{self.width} got {x.shape[-2]}x{x.shape[-1]}")
        qkv = self.qkv(x)
        x1, x2, x3 = torch.split(qkv, self.split, 1)
        out = self.aggregation(x3, self.weight_net(x1, x2))
        return out + self.conv_path(qkv) if self.acmix else out

    def extra_repr(self) -> str:
        return f"map={self.height}x{self.width}, k={self.k}, form={self.form}, acmix={self.acmix}"


def switch_san_to_deploy(model: nn.Module, img_size: int, san_form: str = DEFAULT_SAN_FORM, **options) -> nn.Module:
    """Replace every SAM of `model` (converted in place: pass a copy) by its deploy form at `img_size`.
    ResNet / Swin options (conv_form, attn_*) have no SAN meaning and are refused."""
    if options:
        raise AcmixError(f"deploy option(s) {', '.join(sorted(options))} do not apply to SAN models")
    form = san_form
    from acmix_deploy.nn.deploy import _input_sizes, _set_module

    sams = [(n, m) for n, m in model.named_modules() if isinstance(m, SAM)]
    sizes = _input_sizes(model, img_size, (SAM,))
    for name, sam in sams:
        _set_module(model, name, SAMDeploy(sam, *sizes[name], form=form).to(sam.conv1.weight.device))
    return model
