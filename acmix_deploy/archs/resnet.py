"""ResNet-ACmix and plain ResNet baselines (torchvision-style Bottleneck, official key names).

`block="acmix"` puts an ACmix block where the Bottleneck's 3x3 conv sits (official
ResNet/ResNet_ImageNet.py); `block="conv"` is the plain ResNet baseline with that 3x3 conv, so both
run and compare inside this toolkit. Attribute names are the checkpoint contract.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from acmix_deploy.archs.backbone import PooledBackbone
from acmix_deploy.archs.family import Family, Structure, register_family
from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.acmix import ACmix, out_size
from acmix_deploy.nn.acmix_train import ACmixTrain
from acmix_deploy.nn.deploy import switch_acmix_blocks


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        block: str = "acmix",
        k_att: int = 7,
        heads: int = 4,
        k_conv: int = 3,
        shift: str = "group",
    ):
        super().__init__()
        width = planes
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        if block == "acmix":
            self.conv2 = ACmix(width, width, k_att, heads, k_conv, stride=stride, shift=shift)
        else:
            self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(PooledBackbone):
    """Bottleneck ResNet whose 3x3 convs are ACmix blocks (`block="acmix"`) or plain convs."""

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        block: str = "acmix",
        k_att: int = 7,
        heads: int = 4,
        k_conv: int = 3,
        num_classes: int = 1000,
        width: int = 64,
        img_size: int = 224,
        shift: str = "group",
        in_chans: int = 3,
    ):
        super().__init__()
        if block not in ("acmix", "conv"):
            raise AcmixError(f"unknown ResNet block {block!r}: use 'acmix' or 'conv'")
        self.block, self.k_att, self.layers_cfg = block, k_att, tuple(layers)
        self.num_classes = num_classes
        self.inplanes = width
        self.conv1 = nn.Conv2d(in_chans, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        kw = dict(block=block, k_att=k_att, heads=heads, k_conv=k_conv, shift=shift)
        self.layer1 = self._make_layer(width, layers[0], 1, kw)
        self.layer2 = self._make_layer(width * 2, layers[1], 2, kw)
        self.layer3 = self._make_layer(width * 4, layers[2], 2, kw)
        self.layer4 = self._make_layer(width * 8, layers[3], 2, kw)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = width * 8 * Bottleneck.expansion
        self.fc = nn.Linear(self.num_features, num_classes)
        self.feature_channels = [width * m * Bottleneck.expansion for m in (1, 2, 4, 8)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._set_input_size(img_size)

    def _make_layer(self, planes: int, blocks: int, stride: int, kw: dict) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * Bottleneck.expansion, stride),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        mods = [Bottleneck(self.inplanes, planes, stride, downsample, **kw)]
        self.inplanes = planes * Bottleneck.expansion
        mods += [Bottleneck(self.inplanes, planes, **kw) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    # -- sizes ------------------------------------------------------------------------------------
    def block_input_sizes(self, size: int) -> list[int]:
        """Input map size of every Bottleneck's conv2 for an input of `size` px (one side)."""
        s = (size + 2 * 3 - 7) // 2 + 1  # stem conv, stride 2
        s = (s + 2 * 1 - 3) // 2 + 1  # max pool, stride 2
        sizes = []
        for i, n in enumerate(self.layers_cfg):
            stride = 1 if i == 0 else 2
            sizes.append(s)
            s = out_size(s, stride)
            sizes += [s] * (n - 1)
        return sizes

    def min_input_size(self) -> int:
        if self.block != "acmix":
            return 1
        need = (self.k_att - 1) // 2 + 1
        size = 1
        while min(self.block_input_sizes(size)) < need:
            size += 1
        return size

    def _size_reason(self) -> str:
        return f"k_att={self.k_att}: every ACmix map must be >= {(self.k_att - 1) // 2 + 1} px"

    # -- forward ----------------------------------------------------------------------------------
    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs (strides 4, 8, 16, 32): the backbone for detection / segmentation."""
        self._check_input(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats


register_family(Family(
    name="resnet",
    network=ResNet,
    overrides={
        "num_classes": "num_classes", "img_size": "img_size", "width": "width", "k_att": "k_att",
        "heads": "heads", "k_conv": "k_conv", "shift": "shift", "layers": "layers", "in_chans": "in_chans",
    },
    deploy=switch_acmix_blocks,
    train_forms=(ACmixTrain,),
    structure=Structure(
        stage1={"Conv": 1, "Split": 1}, optimized=True,
        note="after the passes q, k and v of every ACmix block are one 1x1 Conv and one Split (three Convs before)",
    ),
))
