"""Deploy form of Swin Transformer / Swin-ACmix blocks: the same function as nn/swin.py, shaped
for inference engines.

* No torch.roll and no window_partition transposes: the cyclic shift and the window partition are one
  constant position permutation, applied as a row Gather (and its inverse after the projection).
* The relative position bias and the shifted-window mask are added as one constant.
* The q scale folds into the qkv projection (and inversely into the ACmix fc's q weights), rate1 into
  proj, rate2 into the conv path's fc.
* The ACmix conv path runs, as in the reference, inside the rolled frame: a shifted Swin-ACmix block
  gathers its input rows in rolled order once and the conv path gathers its output rows back.
* Where fc does not reduce the channels it is folded into dep_conv (see SwinConvPath), and the
  attention projection plus the sum of both paths is one Gemm (ProjectionAndSum).

Everything works on token rows (B, H * W, C); only the conv path visits an NCHW map. Measurements
behind these choices: README "Performance".
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from acmix_deploy.nn.swin import SwinBlock, WindowAttention, window_partition
from acmix_deploy.nn.deploy import _set_module, sum_shifted
from acmix_deploy.nn.layers import linear


def _rolled_window_order(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """Original flat position of every token in (rolled by -shift, then window-partitioned) order."""
    pos = torch.arange(h * w, dtype=torch.float32).reshape(1, h, w, 1)
    if shift:
        pos = torch.roll(pos, shifts=(-shift, -shift), dims=(1, 2))
    return window_partition(pos, ws).reshape(-1).long()


def _rolled_order(h: int, w: int, shift: int) -> torch.Tensor:
    """Original flat position of every token of the rolled (by -shift) map, in raster order."""
    pos = torch.arange(h * w).reshape(h, w)
    return torch.roll(pos, shifts=(-shift, -shift), dims=(0, 1)).reshape(-1)


class ProjectionAndSum(nn.Module):
    """The attention output projection fused with the sum of both ACmix paths: one 2-D MatMul + Add
    (torch.addmm) that ONNX Runtime runs as a single Gemm, where a 3-D Linear plus a separate Add
    would be a Gemm and an Add. proj's bias is added by the caller's `other` (the conv path output)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.clone())  # (C_out, C_in), as nn.Linear

    def forward(self, rows: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        b, n, c = rows.shape
        return torch.addmm(other.reshape(-1, c), rows.reshape(-1, c), self.weight.t()).reshape(b, n, c)


class SwinAttentionPath(nn.Module):
    """Window attention from qkv rows (q pre-scaled) to output rows in the original frame.

    `rolled_input`: the qkv rows already come in the rolled frame's raster order, so the input gather
    only partitions the windows."""

    def __init__(self, ref: WindowAttention, resolution: tuple[int, int], window: int, shift: int,
                 mask: torch.Tensor | None, out_scale: float, rolled_input: bool = False, sum_in_proj: bool = False):
        super().__init__()
        h, w = resolution
        self.heads, self.head_dim = ref.num_heads, ref.head_dim
        self.tokens = window * window
        order = _rolled_window_order(h, w, window, shift)
        window_index = _rolled_window_order(h, w, window, 0) if rolled_input else order
        self.register_buffer("window_index", window_index, persistent=False)
        self.register_buffer("output_index", torch.argsort(order), persistent=False)
        with torch.no_grad():
            bias = ref.relative_bias().detach().unsqueeze(0)  # (1, heads, N, N)
            if mask is not None:
                bias = bias + mask.detach().unsqueeze(1)  # (nW, heads, N, N)
        self.n_windows = (h // window) * (w // window)
        self.register_buffer("bias", bias.contiguous(), persistent=False)
        weight = ref.proj.weight.detach() * out_scale
        # sum_in_proj: proj(rows) + other as one Gemm; the caller adds proj's bias to `other`
        self.proj = ProjectionAndSum(weight) if sum_in_proj else linear(weight, ref.proj.bias.detach() * out_scale)

    def forward(self, qkv: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        """Output rows in the original frame; `other` (same rows, carrying proj's bias) is added inside
        the projection when the path was built with sum_in_proj."""
        n, nh, hd = self.tokens, self.heads, self.head_dim
        windows = qkv.index_select(1, self.window_index).reshape(-1, n, 3, nh, hd)
        q, k, v = windows.permute(2, 0, 3, 1, 4).unbind(0)  # (B * nW, heads, N, hd)
        logits = torch.matmul(q, k.transpose(-1, -2))
        if self.bias.shape[0] > 1:
            logits = (logits.reshape(-1, self.n_windows, nh, n, n) + self.bias).reshape(-1, nh, n, n)
        else:
            logits = logits + self.bias
        out = torch.matmul(logits.softmax(dim=-1), v).transpose(1, 2).reshape(-1, self.n_windows * n, nh * hd)
        out = out.index_select(1, self.output_index)
        return self.proj(out) if other is None else self.proj(out, other)


class ChannelMix(nn.Module):
    """fc as a MatMul over the channel axis of a (B, C_in, N) tensor: one GEMM with N = H * W * head_dim.
    (As a 1x1 Conv, ONNX Runtime pads its 9 output channels to the NCHWc block and reorders back.)"""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.clone())  # (C_out, C_in)
        self.bias = nn.Parameter(bias.clone().reshape(-1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.weight, x) + self.bias


class SwinConvPath(nn.Module):
    """The ACmix conv path from qkv rows (q pre-scaled): fc over the stacked head pieces, the grouped
    shift conv, both inside the rolled frame; output rows in the original frame.

    Where fc does not reduce the channels (3 * heads <= 9, Swin-T/S stage 1) it is folded into dep_conv:
    the conv reads the qkv pieces directly (same MACs, no fc MatMul and bias Add), and the fc bias, which
    the reference adds before the zero-padded dep_conv, becomes the exact constant map dep_conv(bias).
    """

    def __init__(self, ref: WindowAttention, resolution: tuple[int, int], shift: int, q_scale: float,
                 out_bias: torch.Tensor | None):
        super().__init__()
        h, w = resolution
        nh, hd = ref.num_heads, ref.head_dim
        self.heads, self.head_dim, self.height, self.width = nh, hd, h, w
        dtype = ref.qkv.weight.dtype
        rate2 = ref.rate2.detach().double()
        fc_w = ref.fc.weight.detach().double().reshape(9, 3 * nh) * rate2
        fc_w[:, :nh] /= q_scale
        fc_b = ref.fc.bias.detach().double() * rate2
        # --shift tensor: explicit shifted slices instead of the grouped conv (paper Fig. 3a / Table 7)
        self.explicit_shift = ref.dep_conv.mode == "tensor"
        self.fold_fc = not self.explicit_shift and 3 * nh <= 9
        pieces = 3 * nh if self.fold_fc else 9
        # dep_conv's channel order is d * pieces + j; the channel-first maps come in j * hd + d order
        order = torch.arange(pieces * hd).reshape(pieces, hd).t().reshape(-1)
        self.register_buffer("group_order", order, persistent=False)
        if self.fold_fc:
            kernel = ref.dep_conv.weight.detach().double()  # (C, 9, 3, 3), C = hd * nh
            self.dep_conv = nn.Conv2d(pieces * hd, nh * hd, 3, 1, 1, groups=hd, bias=False, dtype=dtype)
            self.dep_conv.weight.data.copy_(torch.einsum("ojyx,ji->oiyx", kernel, fc_w).to(dtype))
            bias_in = fc_b.reshape(1, 1, 9, 1, 1).expand(1, hd, 9, h, w).reshape(1, 9 * hd, h, w)
            bias_map = F.conv2d(bias_in, kernel, padding=1, groups=hd)[0] + out_bias.double().reshape(-1, 1, 1)
            self.register_buffer("conv_bias", bias_map.to(dtype).contiguous(), persistent=False)
        else:
            self.fc = ChannelMix(fc_w.to(dtype), fc_b.to(dtype))
            if not self.explicit_shift:
                self.dep_conv = nn.Conv2d(9 * hd, nh * hd, 3, 1, 1, groups=hd, bias=True, dtype=dtype)
                self.dep_conv.weight.data.copy_(ref.dep_conv.weight.detach())
                self.dep_conv.bias.data.copy_(out_bias)
        unroll = torch.argsort(_rolled_order(h, w, shift)) if shift else None
        self.register_buffer("unroll_index", unroll, persistent=False)

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        """qkv rows in the rolled frame (the block gathers its input there) -> output rows in the original."""
        nh, hd, h, w = self.heads, self.head_dim, self.height, self.width
        # (B, HW, 3C) -> (B, 3C, HW): a plain 2-D transpose, channel (piece i) * hd + d
        maps = qkv.transpose(1, 2)
        if not self.fold_fc:  # fc mixes the 3 heads pieces of every d: one MatMul over (B, 3 heads, hd * HW)
            maps = self.fc(maps.reshape(-1, 3 * nh, hd * h * w)).reshape(-1, 9 * hd, h * w)
        # whole maps into dep_conv's group order d * pieces + j: a row Gather. As a Transpose, ONNX Runtime
        # merges it with the one above into a 4-D transpose: 4.3 ms instead of ~0.4 ms at 56x56, C = 96.
        f = maps.index_select(1, self.group_order).reshape(-1, maps.shape[1], h, w)
        if self.explicit_shift:
            # every output of group d is the same map: (B, HW, hd, 1), broadcast by the caller
            out = sum_shifted(f, hd, 3).reshape(-1, hd, h * w).transpose(1, 2).unsqueeze(-1)
        else:
            conv = self.dep_conv(f)
            if self.fold_fc:
                conv = conv + self.conv_bias
            out = conv.reshape(-1, nh * hd, h * w).transpose(1, 2)  # (B, HW, C) rolled rows
        if self.unroll_index is not None:
            out = out.index_select(1, self.unroll_index)
        return out


class WindowAttentionDeploy(nn.Module):
    """qkv projection (stage I), attention path and, for Swin-ACmix, conv path; rows in, rows out.

    A shifted Swin-ACmix block gathers its C-channel input rows into the rolled frame once, so neither
    path gathers the 3C-channel qkv rows for the roll (plain Swin keeps the roll inside the window gather,
    which needs no extra gather at all). The attention output projection and the sum of both paths are
    one 2-D MatMul + Add that ONNX Runtime fuses into a Gemm; proj's bias moves into the conv path
    (dep_conv's bias, free, or the constant map of a folded fc).
    """

    def __init__(self, ref: WindowAttention, resolution: tuple[int, int], window: int, shift: int,
                 mask: torch.Tensor | None):
        super().__init__()
        c = ref.dim
        scale = float(ref.scale)
        weight = ref.qkv.weight.detach().clone()
        bias = ref.qkv.bias.detach().clone()
        weight[:c] *= scale
        bias[:c] *= scale
        self.qkv = linear(weight, bias)
        rate1 = float(ref.rate1.detach()) if ref.acmix else 1.0
        rolled = bool(ref.acmix and shift)
        self.fused_projection = bool(ref.acmix and ref.dep_conv.mode != "tensor")
        self.attention = SwinAttentionPath(ref, resolution, window, shift, mask, rate1, rolled, self.fused_projection)
        self.conv_path = None
        if ref.acmix:
            out_bias = ref.proj.bias.detach() * rate1 if self.fused_projection else None
            self.conv_path = SwinConvPath(ref, resolution, shift, scale, out_bias)
        self.register_buffer("roll_index", _rolled_order(*resolution, shift) if rolled else None, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.roll_index is not None:
            x = x.index_select(1, self.roll_index)
        qkv = self.qkv(x)
        if self.fused_projection:
            return self.attention(qkv, self.conv_path(qkv))
        out = self.attention(qkv)
        if self.conv_path is None:
            return out
        # explicit shifts: (B, HW, hd, 1) over output channels o = d * heads + j
        conv = self.conv_path(qkv)
        b, n, c = out.shape
        return (out.reshape(b, n, conv.shape[2], -1) + conv).reshape(b, n, c)


class SwinBlockDeploy(nn.Module):
    """A Swin block on token rows with the deploy attention; drop path is the identity at inference."""

    def __init__(self, ref: SwinBlock):
        super().__init__()
        self.resolution = ref.resolution  # SwinTransformer.forward_stages reads it
        self.norm1, self.norm2, self.mlp = ref.norm1, ref.norm2, ref.mlp
        self.attn = WindowAttentionDeploy(ref.attn, ref.resolution, ref.window, ref.shift_size, ref.attn_mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def switch_swin_to_deploy(model: nn.Module, img_size: int | None = None, **options) -> nn.Module:
    """Replace every SwinBlock of `model` (already a private copy) by its deploy form, in place. The
    blocks know their resolution, so `img_size` is not needed (the Swin network is built for one)."""
    if options:
        raise TypeError(f"Swin deploy takes no options, got {', '.join(sorted(options))}")
    for name, block in [(n, m) for n, m in model.named_modules() if isinstance(m, SwinBlock)]:
        _set_module(model, name, SwinBlockDeploy(block).to(block.norm1.weight.device))
    return model
