"""SAN's patchwise self-attention module (Zhao et al., CVPR 2020) and its ACmix version: reference form.

Parameter names follow hszhao/SAN `model/san.py` (conv1 / conv2 / conv3, the weight network `conv_w`
as a Sequential BN-ReLU-Conv-BN-ReLU-Conv) so its state dicts load strictly. The original aggregation
is a CUDA-only CuPy kernel; `aggregate` restates the ReflectionPad2d + Unfold reference its own tests
compare against, so this module runs on CPU. It is the numerical reference the deploy form
(nn/san_deploy.py) and every export are checked against; it unfolds K^2 copies and is not fast.

SAN-ACmix (shared/SAN_PVT.md, "our definition"): the same module plus the ACmix convolution path over
pieces of width rel = c / 16 (x1, x2 and x3 split into mid / rel pieces, stacked [q, k, v]): fc 1x1 over
the pieces (6 -> 9, no bias by default), then the shift conv `dep_conv` (groups = rel, no bias), and the
output rate1 * aggregation + rate2 * conv path.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.shift import ShiftConv

SHARE_PLANES = 8  # SAN's share_planes: the weight network emits mid / 8 weight channels per offset
K_CONV = 3


def neighbours(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, k*k, H*W): the reflection-padded k x k neighbourhood of every pixel
    (offset index kh * k + kw), as SAN's ReflectionPad2d + Unfold give it."""
    n, c, h, w = x.shape
    cols = F.unfold(F.pad(x, [k // 2] * 4, mode="reflect"), k)
    return cols.view(n, c, k * k, h * w)


def aggregate(x: torch.Tensor, weight: torch.Tensor, k: int) -> torch.Tensor:
    """SAN's aggregation: out[n, c, p] = sum_j weight[n, c mod cw, j, p] * neighbours(x)[n, c, j, p].

    `weight` is (N, cw, k*k, H*W); channel c reads weight channel c mod cw (interleaved sharing, the
    CUDA kernel's `c % weight_channels`), as the view (N, C / cw, cw, k*k, HW) of SAN's test gives it.
    """
    n, c, h, w = x.shape
    cw = weight.shape[1]
    cols = neighbours(x, k).view(n, c // cw, cw, k * k, h * w)
    return (weight.unsqueeze(1) * cols).sum(3).view(n, c, h, w)


class SAM(nn.Module):
    """Patchwise SAM (stride 1), optionally with the ACmix conv path (`acmix=True`)."""

    def __init__(
        self,
        in_planes: int,
        rel_planes: int,
        out_planes: int,
        share_planes: int = SHARE_PLANES,
        kernel_size: int = 7,
        acmix: bool = False,
        fc_bias: bool = False,
        shift: str = "group",
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise AcmixError(f"SAN kernel size must be odd, got {kernel_size}")
        if out_planes % share_planes or out_planes // share_planes < 1:
            raise AcmixError(f"SAM width {out_planes} must be a positive multiple of share_planes={share_planes}")
        k2, cw = kernel_size * kernel_size, out_planes // share_planes
        self.in_planes, self.rel_planes, self.out_planes = in_planes, rel_planes, out_planes
        self.kernel_size, self.weight_channels, self.acmix = kernel_size, cw, acmix
        self.conv1 = nn.Conv2d(in_planes, rel_planes, kernel_size=1)
        self.conv2 = nn.Conv2d(in_planes, rel_planes, kernel_size=1)
        self.conv3 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv_w = nn.Sequential(
            nn.BatchNorm2d(rel_planes * (k2 + 1)), nn.ReLU(inplace=True),
            nn.Conv2d(rel_planes * (k2 + 1), cw, kernel_size=1, bias=False),
            nn.BatchNorm2d(cw), nn.ReLU(inplace=True),
            nn.Conv2d(cw, k2 * cw, kernel_size=1),
        )
        if acmix:
            if out_planes % rel_planes:
                raise AcmixError(f"SAN-ACmix needs mid={out_planes} divisible by rel={rel_planes}")
            self.pieces = 2 + out_planes // rel_planes
            self.rate1 = nn.Parameter(torch.full((1,), 0.5))
            self.rate2 = nn.Parameter(torch.full((1,), 0.5))
            self.fc = nn.Conv2d(self.pieces, K_CONV * K_CONV, kernel_size=1, bias=fc_bias)
            self.dep_conv = ShiftConv(rel_planes, out_planes, K_CONV, 1, shift)

    @property
    def min_input(self) -> int:
        """Smallest map reflection padding of K // 2 accepts."""
        return self.kernel_size // 2 + 1

    def weights(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """The patchwise weight network: conv_w over [x1, the unfolded k x k patch of x2] ->
        (N, cw, k*k, H*W)."""
        n, _, h, w = x1.shape
        k = self.kernel_size
        patch = neighbours(x2, k).reshape(n, -1, h, w)  # channel = ch * k*k + kh * k + kw
        return self.conv_w(torch.cat([x1, patch], 1)).view(n, self.weight_channels, k * k, h * w)

    def conv_path(self, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor) -> torch.Tensor:
        """fc over the stacked rel-wide pieces [x1, x2, x3_0..x3_3] -> 9 maps per piece channel -> dep_conv."""
        n, rel, h, w = x1.shape
        stacked = torch.cat([t.reshape(n, -1, rel, h * w) for t in (x1, x2, x3)], 1)  # (N, pieces, rel, HW)
        f = self.fc(stacked)  # (N, 9, rel, HW)
        return self.dep_conv(f.permute(0, 2, 1, 3).reshape(n, -1, h, w))  # channel = d * 9 + j

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if min(h, w) < self.min_input:
            raise AcmixError(
                f"SAM map {h}x{w} is smaller than {self.min_input} px, the minimum reflection padding "
                f"of kernel {self.kernel_size} allows"
            )
        x1, x2, x3 = self.conv1(x), self.conv2(x), self.conv3(x)
        out = aggregate(x3, self.weights(x1, x2), self.kernel_size)
        if not self.acmix:
            return out
        return self.rate1 * out + self.rate2 * self.conv_path(x1, x2, x3)

    def extra_repr(self) -> str:
        return (f"in={self.in_planes}, rel={self.rel_planes}, mid={self.out_planes}, k={self.kernel_size}, "
                f"acmix={self.acmix}")


class SANBottleneck(nn.Module):
    """SAN's pre-activation block: bn1 -> relu -> SAM -> bn2 -> relu -> conv 1x1 (bias) -> + identity."""

    def __init__(self, planes: int, kernel_size: int, **sam_kwargs):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(planes)
        self.sam = SAM(planes, planes // 16, planes // 4, SHARE_PLANES, kernel_size, **sam_kwargs)
        self.bn2 = nn.BatchNorm2d(planes // 4)
        self.conv = nn.Conv2d(planes // 4, planes, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        out = self.relu(self.bn2(self.sam(out)))
        return self.conv(out) + x
