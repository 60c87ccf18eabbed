"""The PVT v1 block (pre-norm transformer block around the spatial-reduction attention of
nn/pvt_attention.py), with whai362/PVT's key names: norm1, attn.*, norm2, mlp.fc1 / fc2. The network is
acmix_deploy/archs/pvt.py.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from acmix_deploy.nn.layers import DropPath, Mlp
from acmix_deploy.nn.pvt_attention import SRAttention

BLOCK_EPS = 1e-6  # the original's norm_layer = partial(nn.LayerNorm, eps=1e-6); PatchEmbed.norm keeps 1e-5


class PVTBlock(nn.Module):
    """x + attn(norm1(x)); x + mlp(norm2(x)) (pre-norm transformer block)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, sr_ratio: int, drop_path: float, acmix: bool,
                 shift: str, fc_bias: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_EPS)
        self.attn = SRAttention(dim, heads, sr_ratio, True, acmix, shift, fc_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x)))
