"""Swin Transformer and Swin-ACmix: the network (patch embedding, stages, patch merging, head) with
the official key names of both official Swin files; the blocks are acmix_deploy/nn/swin.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from acmix_deploy.archs.family import Family, Structure, register_family
from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.layers import PatchEmbed, drop_path_rates, init_transformer_weights
from acmix_deploy.nn.swin import SwinBlock
from acmix_deploy.nn.swin_deploy import switch_swin_to_deploy
from acmix_deploy.nn.swin_train import WindowAttentionTrain


class PatchMerging(nn.Module):
    def __init__(self, resolution: tuple[int, int], dim: int):
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class SwinPatchEmbed(PatchEmbed):
    """The patch embedding of a Swin model built for one input size: other sizes are refused."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__(patch_size, in_chans, embed_dim)
        self.img_size = img_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            raise AcmixError(
                f"input is {x.shape[-2]}x{x.shape[-1]} but this Swin model was built for "
                f"{self.img_size}x{self.img_size} (rebuild it with img_size=...)"
            )
        return super().forward(x)[0]


class BasicLayer(nn.Module):
    def __init__(self, dim, resolution, depth, heads, window, mlp_ratio, drop_path, downsample, acmix, shift):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, drop_path[i], acmix, shift)
            for i in range(depth)
        )
        self.downsample = PatchMerging(resolution, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for blk in self.blocks:
            x = blk(x)
        return x, (self.downsample(x) if self.downsample is not None else x)


def _fits_windows(resolution: int, window: int) -> bool:
    return resolution <= window or resolution % window == 0


def min_swin_size(patch_size: int, n_stages: int, window: int) -> int:
    """Smallest img_size whose every stage splits into (possibly clamped) windows."""
    step = patch_size * 2 ** (n_stages - 1)
    size = step
    while not all(_fits_windows(size // patch_size // 2**i, window) for i in range(n_stages)):
        size += step
    return size


class SwinTransformer(nn.Module):
    """Swin Transformer (`acmix=False`, official swin_transformer.py keys) or Swin-ACmix."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] | int = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.2,
        acmix: bool = True,
        shift: str = "group",
    ):
        super().__init__()
        n_stages = len(depths)
        if isinstance(num_heads, int):  # the heads of the first stage, doubling per stage (as Swin-T/S)
            num_heads = [num_heads * 2**i for i in range(n_stages)]
        if img_size % (patch_size * 2 ** (n_stages - 1)):
            raise AcmixError(
                f"Swin img_size {img_size} must be a multiple of {patch_size * 2 ** (n_stages - 1)} "
                f"(patch {patch_size} and {n_stages - 1} patch mergings)"
            )
        self.img_size, self.num_classes = img_size, num_classes
        self.min_size = min_swin_size(patch_size, n_stages, window_size)
        self.patch_embed = SwinPatchEmbed(img_size, patch_size, in_chans, embed_dim)
        res = img_size // patch_size
        dpr = drop_path_rates(drop_path_rate, depths)  # stochastic depth decay
        self.layers = nn.ModuleList()
        self.feature_channels = []
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            dim = embed_dim * 2**i
            r = res // 2**i
            layer = BasicLayer(
                dim, (r, r), depth, heads, window_size, mlp_ratio,
                dpr[i], i < n_stages - 1, acmix, shift,
            )
            self.layers.append(layer)
            self.feature_channels.append(dim)
        self.num_features = embed_dim * 2 ** (n_stages - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_transformer_weights)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs as (B, C, H, W) maps (before patch merging)."""
        x = self.patch_embed(x)
        feats = []
        for layer in self.layers:
            out, x = layer(x)
            h, w = layer.blocks[0].resolution
            feats.append(out.transpose(1, 2).reshape(out.shape[0], -1, h, w))
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            _, x = layer(x)
        x = self.norm(x).mean(dim=1)
        return self.head(x)


register_family(Family(
    name="swin",
    network=SwinTransformer,
    overrides={
        "num_classes": "num_classes", "img_size": "img_size", "width": "embed_dim", "embed_dim": "embed_dim",
        "window": "window_size", "heads": "num_heads", "shift": "shift", "depths": "depths",
        "drop_path_rate": "drop_path_rate", "in_chans": "in_chans", "patch_size": "patch_size",
    },
    deploy=switch_swin_to_deploy,
    train_forms=(WindowAttentionTrain,),
    structure=Structure(
        stage1={"MatMul": 1, "Add": 1},
        note="q, k and v of every window attention are one qkv projection: one MatMul and its bias Add",
    ),
))
