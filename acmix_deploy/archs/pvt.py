"""Pyramid Vision Transformer v1 (PVT-T / PVT-S) and PVT-ACmix, with whai362/PVT's key names.

Keys: patch_embed{i}.proj / .norm, pos_embed{i}, block{i}.{j}.norm1 / attn.* / norm2 / mlp.fc1 / fc2,
norm, cls_token, head (classification/pvt.py), so state dicts of the original code load strictly into
`acmix=False` models. The attention (and the ACmix conv path) is acmix_deploy.nn.pvt_attention.

Input sizes. Position embeddings are sized for `img_size` (stage grids img_size / 4, / 8, / 16, / 32,
as the original builds them). At another input size they are resized bilinearly on the fly, as the
original forward does; a checkpoint whose embeddings were trained at another size is resized the
same way when it is loaded (a note in the load report). The smallest input is 32 px (every stage
grid at least one token, the stage-1 reduction window fits). PVT-ACmix upsamples k and v from the
reduced grid by the ratio r, so there every stage grid must be divisible by its ratio: with the
default ratios [8, 4, 2, 1] that means multiples of 32; other sizes are refused with one line.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from acmix_deploy.archs.family import Family, Structure, register_family
from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.layers import PatchEmbed, drop_path_rates, init_transformer_weights
from acmix_deploy.nn.pvt import BLOCK_EPS, PVTBlock
from acmix_deploy.nn.pvt_deploy import PVTBlockDeploy


def stage_grids(size: int, patch_size: int = 4, n_stages: int = 4) -> list[int]:
    """Token grid side of every stage for an input side `size` (floors, as the strided convs give)."""
    grids = [size // patch_size]
    for _ in range(n_stages - 1):
        grids.append(grids[-1] // 2)
    return grids


def resize_pos_embed(pos: torch.Tensor, src: tuple[int, int], dst: tuple[int, int]) -> torch.Tensor:
    """(1, src_h * src_w, C) -> (1, dst_h * dst_w, C), bilinear (align_corners=False), as the original."""
    grid = pos.reshape(1, src[0], src[1], -1).permute(0, 3, 1, 2)
    return F.interpolate(grid, size=dst, mode="bilinear").reshape(1, -1, dst[0] * dst[1]).permute(0, 2, 1)


class PyramidVisionTransformer(nn.Module):
    """PVT v1 (`acmix=False`, whai362/PVT keys) or PVT-ACmix (shared/SAN_PVT.md)."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        mlp_ratios: Sequence[float] = (8, 8, 4, 4),
        depths: Sequence[int] = (2, 2, 2, 2),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        drop_path_rate: float = 0.1,
        acmix: bool = False,
        shift: str = "group",
        fc_bias: bool = True,
        width: int | None = None,
    ):
        super().__init__()
        if width is not None:  # the head width: embed dims = width * heads (64 gives PVT's 64/128/320/512)
            embed_dims = [width * h for h in num_heads]
        n = len(depths)
        if not (len(embed_dims) == len(num_heads) == len(mlp_ratios) == len(sr_ratios) == n):
            raise AcmixError("PVT embed_dims, num_heads, mlp_ratios, sr_ratios and depths need one value per stage")
        if sr_ratios[-1] != 1:
            raise AcmixError("PVT's last stage carries the cls token and needs sr_ratio 1")
        self.num_stages, self.patch_size, self.sr_ratios, self.acmix = n, patch_size, list(sr_ratios), acmix
        self.img_size, self.num_classes = img_size, num_classes
        self.min_size = self._min_size()
        self.check_size(img_size)
        self.pos_grids = stage_grids(img_size, patch_size, n)
        dpr = drop_path_rates(drop_path_rate, depths)
        self.feature_channels = list(embed_dims)
        for i in range(n):
            embed = PatchEmbed(patch_size if i == 0 else 2, in_chans if i == 0 else embed_dims[i - 1], embed_dims[i])
            tokens = self.pos_grids[i] ** 2 + (1 if i == n - 1 else 0)
            blocks = nn.ModuleList(
                PVTBlock(embed_dims[i], num_heads[i], mlp_ratios[i], sr_ratios[i], dpr[i][j], acmix, shift, fc_bias)
                for j in range(depths[i])
            )
            setattr(self, f"patch_embed{i + 1}", embed)
            setattr(self, f"pos_embed{i + 1}", nn.Parameter(torch.zeros(1, tokens, embed_dims[i])))
            setattr(self, f"block{i + 1}", blocks)
        self.norm = nn.LayerNorm(embed_dims[-1], eps=BLOCK_EPS)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims[-1]))
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        for i in range(n):
            nn.init.trunc_normal_(getattr(self, f"pos_embed{i + 1}"), std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_transformer_weights)

    # ------------------------------------------------------------------ input sizes
    def _min_size(self) -> int:
        """Smallest side with every stage grid >= 1 token and >= the stage's reduction ratio."""
        size = 1
        while not self._size_ok(size, divisible=False):
            size += 1
        return size

    def _size_ok(self, size: int, divisible: bool) -> bool:
        grids = stage_grids(size, self.patch_size, self.num_stages)
        if any(g < max(r, 1) for g, r in zip(grids, self.sr_ratios)):
            return False
        return not divisible or all(g % r == 0 for g, r in zip(grids, self.sr_ratios))

    def check_size(self, size: int) -> None:
        """One-line refusal of sizes below the minimum and, for PVT-ACmix, of grids not divisible by r."""
        if size < self.min_size:
            raise AcmixError(f"input size {size} px is below the minimum of {self.min_size} px for this model")
        if self.acmix and not self._size_ok(size, divisible=True):
            step = self.patch_size * 2 ** (self.num_stages - 1)
            raise AcmixError(
                f"PVT-ACmix input size {size} px: every stage grid must be divisible by its spatial-reduction "
                f"ratio {self.sr_ratios}; use a multiple of {step} px (e.g. {max(step, size // step * step)})"
            )

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Position embeddings trained at another input size, resized bilinearly to this model's grids."""
        out, notes = dict(state), []
        for i in range(self.num_stages):
            key = f"pos_embed{i + 1}"
            own, value = getattr(self, key), state.get(key)
            if value is None or value.shape == own.shape or value.ndim != 3 or value.shape[2] != own.shape[2]:
                continue
            cls = 1 if i == self.num_stages - 1 else 0
            side = int(round((value.shape[1] - cls) ** 0.5))
            if side * side != value.shape[1] - cls:
                continue
            dst = self.pos_grids[i]
            resized = resize_pos_embed(value[:, cls:].float(), (side, side), (dst, dst)).to(value.dtype)
            out[key] = torch.cat([value[:, :cls], resized], dim=1).contiguous()
            notes.append(f"resized: {key} from a {side}x{side} to a {dst}x{dst} grid (bilinear)")
        return out, notes

    # ------------------------------------------------------------------ forward
    def _pos_embed(self, i: int, h: int, w: int) -> torch.Tensor:
        pos = getattr(self, f"pos_embed{i + 1}")
        g = self.pos_grids[i]
        if (h, w) == (g, g):
            return pos
        if i == self.num_stages - 1:
            return torch.cat([pos[:, :1], resize_pos_embed(pos[:, 1:], (g, g), (h, w))], dim=1)
        return resize_pos_embed(pos, (g, g), (h, w))

    def _stages(self, x: torch.Tensor):
        """Yield (tokens, h, w) after every stage; the last stage's rows start with the cls token."""
        for side in sorted({int(x.shape[-2]), int(x.shape[-1])}):
            self.check_size(side)
        b = x.shape[0]
        for i in range(self.num_stages):
            tokens, h, w = getattr(self, f"patch_embed{i + 1}")(x)
            if i == self.num_stages - 1:
                tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
            tokens = tokens + self._pos_embed(i, h, w)
            for blk in getattr(self, f"block{i + 1}"):
                tokens = blk(tokens, h, w)
            yield tokens, h, w
            if i != self.num_stages - 1:
                x = tokens.transpose(1, 2).reshape(b, -1, h, w)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs as (B, C, H, W) maps (the last without its cls token)."""
        feats = []
        for tokens, h, w in self._stages(x):
            rows = tokens[:, tokens.shape[1] - h * w :]
            feats.append(rows.transpose(1, 2).reshape(rows.shape[0], -1, h, w))
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for tokens, _, _ in self._stages(x):
            pass
        return self.head(self.norm(tokens)[:, 0])


def switch_pvt_to_deploy(model: PyramidVisionTransformer, img_size: int, **options) -> PyramidVisionTransformer:
    """Replace every PVT block of `model` (already a private copy) by its deploy form for `img_size`."""
    if options:
        raise TypeError(f"PVT deploy takes no options, got {', '.join(sorted(options))}")
    model.check_size(img_size)
    grids = stage_grids(img_size, model.patch_size, model.num_stages)
    for i, g in enumerate(grids):
        blocks = getattr(model, f"block{i + 1}")
        setattr(model, f"block{i + 1}", nn.ModuleList(
            PVTBlockDeploy(b, g, g).to(b.norm1.weight.device) for b in blocks
        ))
    return model


register_family(Family(
    name="pvt",
    network=PyramidVisionTransformer,
    overrides={
        "num_classes": "num_classes", "img_size": "img_size", "embed_dims": "embed_dims", "heads": "num_heads",
        "depths": "depths", "sr_ratios": "sr_ratios", "mlp_ratios": "mlp_ratios", "shift": "shift",
        "fc_bias": "fc_bias", "drop_path_rate": "drop_path_rate", "in_chans": "in_chans", "width": "width",
    },
    deploy=switch_pvt_to_deploy,
    structure=Structure(
        stage1={"MatMul": 2, "Add": 2}, optional={"Conv": 1, "LayerNormalization": 1},
        note="q and kv of every attention are two projections (MatMul + bias Add each); where the "
             "spatial-reduction ratio r > 1, sr's Conv and norm's LayerNormalization come before kv",
    ),
))
