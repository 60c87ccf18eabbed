"""A torchvision-free ResNet-like stand-in for ResNet-ACmix, used to test the passes on real
exporter output (TorchScript exporter and torch.export-based exporter).

Each bottleneck's middle layer is an ACmix-like block: three parallel 1x1 convs (q, k, v) over one
input, a softmax attention path scaled by 1/sqrt(d), a light conv path (fc over the stacked head
pieces + grouped 3x3 dep_conv), mixed as rate1 * attention + rate2 * conv with learnt scalars.
BatchNorm follows every conv of the bottleneck, as in ResNet. Not the reference ACmix (global
instead of local attention), only its graph shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MixBlock(nn.Module):
    def __init__(self, c: int, heads: int = 4, stride: int = 1) -> None:
        super().__init__()
        self.heads, self.stride = heads, stride
        self.head_dim = c // heads
        self.conv1 = nn.Conv2d(c, c, 1)
        self.conv2 = nn.Conv2d(c, c, 1)
        self.conv3 = nn.Conv2d(c, c, 1)
        self.fc = nn.Conv2d(3 * heads, 9, 1, bias=False)
        self.dep_conv = nn.Conv2d(9 * self.head_dim, c, 3, padding=1, stride=stride, groups=self.head_dim, bias=False)
        self.rate1 = nn.Parameter(torch.tensor([0.6]))
        self.rate2 = nn.Parameter(torch.tensor([0.4]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        b, c, h, w = q.shape
        n, hd = self.heads, self.head_dim
        qh = q.reshape(b * n, hd, h * w) * hd**-0.5
        kh = k.reshape(b * n, hd, h * w)
        vh = v.reshape(b * n, hd, h * w)
        attn = torch.softmax(qh.transpose(1, 2) @ kh, dim=-1)
        out_att = (vh @ attn.transpose(1, 2)).reshape(b, c, h, w)
        if self.stride > 1:
            out_att = F.avg_pool2d(out_att, self.stride)
        stacked = torch.cat([q.reshape(b, n, hd, h * w), k.reshape(b, n, hd, h * w), v.reshape(b, n, hd, h * w)], 1)
        f_conv = self.fc(stacked).permute(0, 2, 1, 3).reshape(b, 9 * hd, h, w)
        return self.rate1 * out_att + self.rate2 * self.dep_conv(f_conv)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, heads: int = 4) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = MixBlock(planes, heads, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + identity)


class MixResNet(nn.Module):
    def __init__(self, layers=(1, 1), width: int = 8, num_classes: int = 10, heads: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        inplanes = width
        for i, depth in enumerate(layers):
            planes = width * 2**i
            blocks = []
            for j in range(depth):
                blocks.append(Bottleneck(inplanes, planes, stride=(2 if i > 0 and j == 0 else 1), heads=heads))
                inplanes = planes * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.n_layers = len(layers)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(self.n_layers):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(x.mean((2, 3)))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics, so that folding them is actually tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def export(model: nn.Module, path: str, size: int, dynamo: bool, opset: int = 18, dynamic_batch: bool = False) -> None:
    """Export with the exporter chosen explicitly (input "images", output "logits")."""
    import warnings

    x = torch.randn(1, 3, size, size)
    kwargs = {}
    if dynamic_batch:
        if dynamo:
            kwargs["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch")}}
        else:
            kwargs["dynamic_axes"] = {"images": {0: "batch"}, "logits": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, dynamo=dynamo, opset_version=opset, input_names=["images"],
                          output_names=["logits"], **kwargs)
