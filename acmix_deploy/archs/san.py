"""SAN (patchwise self-attention networks, hszhao/SAN) and SAN-ACmix.

Layout and attribute names follow hszhao/SAN `model/san.py` (the checkpoint contract): a 1x1 stem at
full resolution (conv_in, bn_in), then five stages i = 0..4, each MaxPool2d(2, 2) -> conv_i 1x1 ->
layer_i (SAN bottlenecks) -> bn_i -> ReLU, then average pool and fc. Widths are width * (1, 4, 8, 16, 32)
(SAN: width 64). `acmix=True` adds the ACmix conv path to every SAM (nn/san.py); `acmix_stage0=False`
keeps stage 0 plain (a documented alternative reading; the default puts ACmix in every SAM).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from acmix_deploy.archs.backbone import PooledBackbone
from acmix_deploy.archs.family import Family, Structure, register_family
from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.san import SANBottleneck
from acmix_deploy.nn.san_deploy import switch_san_to_deploy

STAGE_MULTIPLIERS = (1, 4, 8, 16, 32)


def stage_sizes(size: int) -> list[int]:
    """Map size (one side) of each stage's SAMs for an input of `size` px: five MaxPool2d(2, 2)."""
    out = []
    for _ in STAGE_MULTIPLIERS:
        size //= 2
        out.append(size)
    return out


class SAN(PooledBackbone):
    """Patchwise SAN; `acmix=True` gives SAN-ACmix."""

    def __init__(
        self,
        layers: Sequence[int] = (2, 1, 2, 4, 1),
        kernels: Sequence[int] = (3, 7, 7, 7, 7),
        acmix: bool = False,
        num_classes: int = 1000,
        width: int = 64,
        img_size: int = 224,
        in_chans: int = 3,
        fc_bias: bool = False,
        acmix_stage0: bool = True,
        shift: str = "group",
    ):
        super().__init__()
        if len(layers) != 5 or len(kernels) != 5:
            raise AcmixError(f"SAN needs 5 stages: got layers={list(layers)}, kernels={list(kernels)}")
        if width % 32 or width < 32:
            raise AcmixError(f"SAN width must be a multiple of 32 (share_planes 8 x rel c/16), got {width}")
        self.layers_cfg, self.kernels, self.acmix = tuple(layers), tuple(kernels), acmix
        self.num_classes = num_classes
        widths = [width * m for m in STAGE_MULTIPLIERS]
        self.conv_in, self.bn_in = nn.Conv2d(in_chans, width, 1, bias=False), nn.BatchNorm2d(width)
        prev = width
        for i, (c, n, k) in enumerate(zip(widths, layers, kernels)):
            sam_kw = dict(acmix=acmix and (i > 0 or acmix_stage0), fc_bias=fc_bias, shift=shift)
            setattr(self, f"conv{i}", nn.Conv2d(prev, c, 1, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(c))
            setattr(self, f"layer{i}", nn.Sequential(*[SANBottleneck(c, k, **sam_kw) for _ in range(n)]))
            prev = c
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(prev, num_classes)
        self.num_features = prev
        self.feature_channels = widths[1:]
        self._set_input_size(img_size)

    # -- sizes ------------------------------------------------------------------------------------
    def min_input_size(self) -> int:
        """Smallest input whose every SAM map is >= kernel // 2 + 1 px (reflection padding)."""
        size = 1
        while any(s < k // 2 + 1 for s, k in zip(stage_sizes(size), self.kernels)):
            size += 1
        return size

    def _size_reason(self) -> str:
        return f"kernels {list(self.kernels)} at strides 2-32: every SAM map must be >= kernel // 2 + 1 px"

    # -- forward ----------------------------------------------------------------------------------
    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        conv, bn, layer = getattr(self, f"conv{i}"), getattr(self, f"bn{i}"), getattr(self, f"layer{i}")
        return self.relu(bn(layer(conv(self.pool(x)))))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of stages 1-4 (strides 4, 8, 16, 32), the maps a detection / segmentation neck reads."""
        self._check_input(x)
        x = self.relu(self.bn_in(self.conv_in(x)))
        feats = []
        for i in range(len(STAGE_MULTIPLIERS)):
            x = self._stage(i, x)
            if i > 0:
                feats.append(x)
        return feats


register_family(Family(
    name="san",
    network=SAN,
    overrides={
        "num_classes": "num_classes", "img_size": "img_size", "width": "width", "layers": "layers",
        "kernels": "kernels", "in_chans": "in_chans", "shift": "shift", "fc_bias": "fc_bias",
        "acmix_stage0": "acmix_stage0",
    },
    deploy=switch_san_to_deploy,
    structure=Structure(
        stage1={"Conv": 1},
        note="x1, x2 and x3 of every SAM are one 1x1 Conv (qkv; the Split after it sits at the SAM's own path)",
    ),
))
