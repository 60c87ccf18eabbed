"""Swin Transformer blocks (window attention, the Swin block) and the Swin-ACmix window attention,
with the official key names of both official Swin files (the network is acmix_deploy/archs/swin.py).

`acmix=True` adds the ACmix convolution path to a window attention (official
Swin-Transformer/models/swin_transformer_acmix.py): fc (3*heads -> 9, with bias) over the stacked
q/k/v head pieces, a grouped shift conv (dep_conv, no bias), and rate1 * attention + rate2 * conv.
As in the official code the conv path runs inside the cyclically shifted frame.

Resolution-dependent buffers (attn_mask, relative_position_index) are rebuilt from the geometry for
any img_size and are never taken from a checkpoint, so a model built for another size still loads.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.layers import DropPath, Mlp
from acmix_deploy.nn.shift import ShiftConv


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, ws * ws, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """(B * nW, ws * ws, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def relative_position_index(ws: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]


def shifted_window_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """(nW, N, N) additive mask (0 / -100, the official value) for shifted windows."""
    img = torch.zeros(1, h, w, 1)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img[:, hs, wsl, :] = cnt
            cnt += 1
    win = window_partition(img, ws).squeeze(-1)
    mask = win.unsqueeze(1) - win.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class WindowAttention(nn.Module):
    """Window multi-head self-attention with relative position bias; `acmix` adds the conv path."""

    def __init__(self, dim: int, window: int, heads: int, acmix: bool = False, shift: str = "group"):
        super().__init__()
        self.dim, self.window, self.num_heads, self.acmix = dim, window, heads, acmix
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        if acmix:
            self.fc = nn.Conv2d(3 * heads, 9, kernel_size=1, bias=True)
            self.dep_conv = ShiftConv(self.head_dim, dim, 3, 1, shift)
            self.rate1 = nn.Parameter(torch.full((1,), 0.5))
            self.rate2 = nn.Parameter(torch.full((1,), 0.5))
        self._register_load_state_dict_pre_hook(_keep_derived_buffers(("relative_position_index",)), with_module=True)

    def relative_bias(self) -> torch.Tensor:
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1)

    def conv_path(self, qkv: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3C) -> (B, H, W, C): fc over stacked head pieces, then shift-sum."""
        b, h, w, _ = qkv.shape
        f_all = qkv.reshape(b, h * w, 3 * self.num_heads, self.head_dim).permute(0, 2, 1, 3)
        f_conv = self.fc(f_all).permute(0, 3, 1, 2).reshape(b, 9 * self.head_dim, h, w)
        return self.dep_conv(f_conv).permute(0, 2, 3, 1)

    def attention(self, qkv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, h, w, c3 = qkv.shape
        ws, nh, hd = self.window, self.num_heads, self.head_dim
        n = ws * ws
        windows = window_partition(qkv, ws)  # (B*nW, N, 3C)
        bw = windows.shape[0]
        q, k, v = windows.reshape(bw, n, 3, nh, hd).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1) + self.relative_bias().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, nh, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, nh, n, n)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c3 // 3)
        return window_reverse(self.proj(x), ws, h, w)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, H, W, C) in the (possibly shifted) frame."""
        qkv = self.qkv(x)
        out = self.attention(qkv, mask)
        if self.acmix:
            out = self.rate1 * out + self.rate2 * self.conv_path(qkv)
        return out


def _keep_derived_buffers(names: tuple[str, ...]):
    """Load hook: buffers derived from geometry are ours, whatever a checkpoint holds (or lacks)."""

    def hook(module, state_dict, prefix, *args, **kwargs):
        for name in names:
            value = getattr(module, name)
            if value is not None:
                state_dict[prefix + name] = value.clone()
            else:
                state_dict.pop(prefix + name, None)

    return hook


class SwinBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        resolution: tuple[int, int],
        heads: int,
        window: int,
        shift_size: int,
        mlp_ratio: float,
        drop_path: float,
        acmix: bool,
        shift: str,
    ):
        super().__init__()
        self.resolution = resolution
        if min(resolution) <= window:
            window, shift_size = min(resolution), 0
        if resolution[0] % window or resolution[1] % window:
            raise AcmixError(
                f"Swin stage resolution {resolution[0]}x{resolution[1]} is not a multiple of window {window}; "
                "choose img_size so that every stage divides into windows"
            )
        self.window, self.shift_size = window, shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads, acmix, shift)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(*resolution, window, shift_size) if shift_size > 0 else None
        self.register_buffer("attn_mask", mask)
        self._register_load_state_dict_pre_hook(_keep_derived_buffers(("attn_mask",)), with_module=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        if self.shift_size:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        x = self.attn(x, self.attn_mask)
        if self.shift_size:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = shortcut + self.drop_path(x.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))

