"""PVT v1 spatial-reduction attention and its ACmix form: the readable reference.

Keys follow whai362/PVT classification/pvt.py (`Attention`): q, kv, proj, and where the
spatial-reduction ratio r > 1, sr (Conv2d, kernel = stride = r) and norm (LayerNorm on the reduced
tokens). Keys and values come from the r x r reduced token map; the cls token (last stage only, where
r = 1) takes part like any token.

`acmix=True` adds the ACmix convolution path as adopted in shared/SAN_PVT.md ("PVT-ACmix"): the q
heads, k heads and v heads (width head_dim each) are stacked as 3 * heads pieces on the full token
grid, k and v nearest-upsampled by r from the reduced grid (no parameters); fc (1x1 conv over the
pieces, 3 * heads -> 9, with bias, Swin-ACmix style) and dep_conv (3x3, groups = head_dim, one-hot
shift init, no bias) give the conv output; out = rate1 * proj(attention) + rate2 * conv. The cls
token has no grid position: it is removed from q, k, v before the conv path and receives only
rate1 * proj(attention).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.shift import ShiftConv


class SRAttention(nn.Module):
    """PVT spatial-reduction attention over token rows (B, [1 +] H * W, C); optional ACmix conv path."""

    # ACmix stage I (the projections that make q, k, v) for flops.py: q, and sr + norm + kv
    stage1_children = ("q", "sr", "norm", "kv")

    def __init__(self, dim: int, heads: int, sr_ratio: int = 1, qkv_bias: bool = True, acmix: bool = False,
                 shift: str = "group", fc_bias: bool = True):
        super().__init__()
        if dim % heads:
            raise AcmixError(f"PVT dim {dim} is not divisible by heads {heads}")
        self.dim, self.num_heads, self.sr_ratio, self.acmix = dim, heads, sr_ratio, acmix
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)
        if acmix:
            self.fc = nn.Conv2d(3 * heads, 9, kernel_size=1, bias=fc_bias)
            self.dep_conv = ShiftConv(self.head_dim, dim, 3, 1, shift)
            self.rate1 = nn.Parameter(torch.full((1,), 0.5))
            self.rate2 = nn.Parameter(torch.full((1,), 0.5))

    def keys_values(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """kv rows (B, N', 2C): from the r x r reduced map (sr -> norm), or from every token at r = 1."""
        if self.sr_ratio == 1:
            return self.kv(x)
        b, n, c = x.shape
        if n != h * w:
            raise AcmixError("PVT spatial reduction cannot take a cls token (use sr_ratio 1 in the last stage)")
        reduced = self.sr(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return self.kv(self.norm(reduced))

    def attention(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """Multi-head softmax attention, then proj: (B, N, C), (B, N', 2C) -> (B, N, C)."""
        b, n, c = q.shape
        nh, hd = self.num_heads, self.head_dim
        q = q.reshape(b, n, nh, hd).transpose(1, 2)
        k, v = kv.reshape(b, -1, 2, nh, hd).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))

    def conv_path(self, q: torch.Tensor, kv: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """ACmix conv path on the H x W grid (cls token removed): (B, H * W, C)."""
        b, _, c = q.shape
        r = self.sr_ratio
        q = q[:, q.shape[1] - h * w :]
        kv = kv[:, kv.shape[1] - (h // r) * (w // r) :]
        kv_map = kv.transpose(1, 2).reshape(b, 2 * c, h // r, w // r)
        if r > 1:
            kv_map = F.interpolate(kv_map, scale_factor=r, mode="nearest")
        qkv = torch.cat([q, kv_map.flatten(2).transpose(1, 2)], dim=-1)  # pieces [q heads, k heads, v heads]
        pieces = qkv.reshape(b, h * w, 3 * self.num_heads, self.head_dim).permute(0, 2, 1, 3)
        f = self.fc(pieces).permute(0, 3, 1, 2).reshape(b, 9 * self.head_dim, h, w)  # channel d * 9 + kpos
        return self.dep_conv(f).flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        q = self.q(x)
        kv = self.keys_values(x, h, w)
        out = self.attention(q, kv)
        if not self.acmix:
            return out
        conv = self.conv_path(q, kv, h, w)
        cls = out.shape[1] - h * w
        if cls:
            conv = F.pad(conv, (0, 0, cls, 0))  # the cls rows get no conv term
        return self.rate1 * out + self.rate2 * conv
