"""Deploy form of Swin Transformer / Swin-ACmix blocks: the same function as archs/swin.py, shaped
for inference engines.

* No torch.roll and no window_partition transposes: the cyclic shift and the window partition are one
  constant position permutation, applied as a row Gather (and its inverse after the projection).
* The relative position bias and the shifted-window mask are added as one constant.
* The q scale folds into the qkv projection (and inversely into the ACmix fc's q weights), rate1 into
  proj, rate2 into the conv path's fc.
* The ACmix conv path runs, as in the reference, inside the rolled frame: its input rows are gathered
  in rolled order and its output rows gathered back.

Everything works on token rows (B, H * W, C); only the conv path visits an NCHW map.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from acmix_deploy.archs.swin import SwinBlock, SwinTransformer, WindowAttention, window_partition


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


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype)
    lin.weight.data.copy_(weight)
    if bias is not None:
        lin.bias.data.copy_(bias)
    return lin


class SwinAttentionPath(nn.Module):
    """Window attention from qkv rows (q pre-scaled) to output rows in the original frame."""

    def __init__(self, ref: WindowAttention, resolution: tuple[int, int], window: int, shift: int,
                 mask: torch.Tensor | None, out_scale: float):
        super().__init__()
        h, w = resolution
        self.heads, self.head_dim, self.window = ref.num_heads, ref.head_dim, window
        self.tokens = window * window
        order = _rolled_window_order(h, w, window, shift)
        self.register_buffer("window_index", order, persistent=False)
        self.register_buffer("output_index", torch.argsort(order), persistent=False)
        with torch.no_grad():
            bias = ref.relative_bias().detach().unsqueeze(0)  # (1, heads, N, N)
            if mask is not None:
                bias = bias + mask.detach().unsqueeze(1)  # (nW, heads, N, N)
        self.n_windows = (h // window) * (w // window)
        self.register_buffer("bias", bias.contiguous(), persistent=False)
        self.proj = _linear(ref.proj.weight.detach() * out_scale, ref.proj.bias.detach() * out_scale)

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        n, nh, hd = self.tokens, self.heads, self.head_dim
        windows = qkv.index_select(1, self.window_index).reshape(-1, n, 3, nh, hd)
        q, k, v = windows.permute(2, 0, 3, 1, 4).unbind(0)  # (B * nW, heads, N, hd)
        logits = torch.matmul(q, k.transpose(-1, -2))
        if self.bias.shape[0] > 1:
            logits = (logits.reshape(-1, self.n_windows, nh, n, n) + self.bias).reshape(-1, nh, n, n)
        else:
            logits = logits + self.bias
        out = torch.matmul(logits.softmax(dim=-1), v).transpose(1, 2).reshape(-1, self.n_windows * n, nh * hd)
        return self.proj(out.index_select(1, self.output_index))


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
    shift conv, both inside the rolled frame; output rows in the original frame."""

    def __init__(self, ref: WindowAttention, resolution: tuple[int, int], shift: int, q_scale: float):
        super().__init__()
        h, w = resolution
        nh, hd = ref.num_heads, ref.head_dim
        self.heads, self.head_dim, self.height, self.width = nh, hd, h, w
        rate2 = ref.rate2.detach().double()
        fc_w = ref.fc.weight.detach().double().reshape(9, 3 * nh) * rate2
        fc_w[:, :nh] /= q_scale
        dtype = ref.qkv.weight.dtype
        self.fc = ChannelMix(fc_w.to(dtype), (ref.fc.bias.detach().double() * rate2).to(dtype))
        # --shift tensor: explicit shifted slices instead of the grouped conv (paper Fig. 3a / Table 7)
        self.explicit_shift = ref.dep_conv.mode == "tensor"
        if not self.explicit_shift:
            self.dep_conv = nn.Conv2d(9 * hd, nh * hd, 3, 1, 1, groups=hd, bias=False, dtype=dtype)
            self.dep_conv.weight.data.copy_(ref.dep_conv.weight.detach())
        if shift:
            order = _rolled_order(h, w, shift)
            self.register_buffer("roll_index", order, persistent=False)
            self.register_buffer("unroll_index", torch.argsort(order), persistent=False)
        else:
            self.roll_index = self.unroll_index = None

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        nh, hd, h, w = self.heads, self.head_dim, self.height, self.width
        if self.roll_index is not None:
            qkv = qkv.index_select(1, self.roll_index)
        # (B, HW, 3C) -> (B, 3 heads, hd * HW): a plain 2-D transpose; fc mixes the 3 heads pieces,
        # then (B, 9, hd, HW) -> (B, hd, 9, HW) moves whole maps into dep_conv's channel order d * 9 + j
        pieces = qkv.transpose(1, 2).reshape(-1, 3 * nh, hd * h * w)
        f = self.fc(pieces).reshape(-1, 9, hd, h * w).transpose(1, 2).reshape(-1, 9 * hd, h, w)
        if self.explicit_shift:
            padded = F.pad(f, (1, 1, 1, 1)).reshape(-1, hd, 9, h + 2, w + 2)
            total = padded[:, :, 0, 0:h, 0:w]
            for i in range(1, 9):
                dy, dx = divmod(i, 3)
                total = total + padded[:, :, i, dy : dy + h, dx : dx + w]
            # every output of group d is the same map: (B, HW, hd, 1), broadcast by the caller
            out = total.reshape(-1, hd, h * w).transpose(1, 2).unsqueeze(-1)
        else:
            out = self.dep_conv(f).reshape(-1, nh * hd, h * w).transpose(1, 2)  # (B, HW, C) rolled rows
        if self.unroll_index is not None:
            out = out.index_select(1, self.unroll_index)
        return out


class WindowAttentionDeploy(nn.Module):
    """qkv projection (stage I), attention path and, for Swin-ACmix, conv path; rows in, rows out."""

    def __init__(self, ref: WindowAttention, resolution: tuple[int, int], window: int, shift: int,
                 mask: torch.Tensor | None):
        super().__init__()
        c = ref.dim
        scale = float(ref.scale)
        weight = ref.qkv.weight.detach().clone()
        bias = ref.qkv.bias.detach().clone()
        weight[:c] *= scale
        bias[:c] *= scale
        self.qkv = _linear(weight, bias)
        rate1 = float(ref.rate1.detach()) if ref.acmix else 1.0
        self.attention = SwinAttentionPath(ref, resolution, window, shift, mask, rate1)
        self.conv_path = SwinConvPath(ref, resolution, shift, scale) if ref.acmix else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x)
        out = self.attention(qkv)
        if self.conv_path is None:
            return out
        conv = self.conv_path(qkv)
        if conv.dim() == 4:  # explicit shifts: (B, HW, hd, 1) over output channels o = d * heads + j
            b, n, c = out.shape
            return (out.reshape(b, n, conv.shape[2], -1) + conv).reshape(b, n, c)
        return out + conv


class SwinBlockDeploy(nn.Module):
    """A Swin block on token rows with the deploy attention; drop path is the identity at inference."""

    def __init__(self, ref: SwinBlock):
        super().__init__()
        self.resolution = ref.resolution
        self.norm1, self.norm2, self.mlp = ref.norm1, ref.norm2, ref.mlp
        self.attn = WindowAttentionDeploy(ref.attn, ref.resolution, ref.window, ref.shift_size, ref.attn_mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def switch_swin_to_deploy(model: SwinTransformer, **options) -> SwinTransformer:
    """Replace every SwinBlock of `model` (already a private copy) by its deploy form, in place."""
    if options:
        raise TypeError(f"Swin deploy takes no options, got {', '.join(sorted(options))}")
    for layer in model.layers:
        layer.blocks = nn.ModuleList(SwinBlockDeploy(b).to(b.norm1.weight.device) for b in layer.blocks)
    return model
