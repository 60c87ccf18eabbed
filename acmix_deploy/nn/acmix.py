"""The ACmix block of ResNet-ACmix (paper sections 4.2-4.3, Eq. 9-13): the reference form.

Parameter names and shapes follow the official code (ResNet/test_bottleneck.py) so official state
dicts load strictly: conv1/conv2/conv3 (q, k, v 1x1 convs with bias), conv_p (2 -> head_dim,
positional encoding), fc (3*heads -> k_conv^2, no bias), dep_conv (grouped shift conv, no bias),
rate1, rate2.

This is the numerical reference every deploy form and exported graph is checked against. It follows
the official maths (SASA-style local attention over reflection-padded k_att x k_att windows) but
also runs at odd sizes with stride 2 (output size ceil(H / stride)), where the official view()
crashes, and builds its position grid without torch.linspace, which the TorchScript exporter turns
into a float64 constant that ONNX Runtime refuses.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.shift import ShiftConv


@lru_cache(maxsize=None)
def _linspace_values(n: int) -> tuple[float, ...]:
    return tuple(torch.linspace(-1.0, 1.0, n, dtype=torch.float32).tolist())


def position_grid(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """(1, 2, h, w) grid of x (channel 0) and y (channel 1) coordinates, each linspace(-1, 1).

    The values are torch.linspace's own (bit-identical to the official model, which matters: random
    deep networks amplify 1-ulp differences), but baked in as float32 constants, because the
    TorchScript exporter turns a traced linspace into a float64 constant that ONNX Runtime refuses.
    """
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        lw, lh = torch.linspace(-1.0, 1.0, w, device=device), torch.linspace(-1.0, 1.0, h, device=device)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "torch.tensor results are registered as constants" when tracing
            lw = torch.tensor(_linspace_values(w), dtype=torch.float32, device=device)
            lh = torch.tensor(_linspace_values(h), dtype=torch.float32, device=device)
    return torch.stack([lw.unsqueeze(0).expand(h, w), lh.unsqueeze(1).expand(h, w)]).unsqueeze(0)


def out_size(size: int, stride: int) -> int:
    """Spatial size after an ACmix block: ceil(size / stride), as unfold and dep_conv give it."""
    return (size - 1) // stride + 1


class ACmix(nn.Module):
    """Reference ACmix block: rate1 * local self-attention + rate2 * shift-conv, sharing q/k/v."""

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        k_att: int = 7,
        head: int = 4,
        k_conv: int = 3,
        stride: int = 1,
        dilation: int = 1,
        shift: str = "group",
    ):
        super().__init__()
        if out_planes % head:
            raise AcmixError(f"ACmix width {out_planes} is not divisible by heads={head}")
        if dilation != 1:
            raise AcmixError("ACmix blocks support dilation=1 only (as the official model uses)")
        if k_att % 2 != 1:
            raise AcmixError(f"k_att must be odd, got {k_att}")
        self.in_planes, self.out_planes = in_planes, out_planes
        self.head, self.kernel_att, self.kernel_conv, self.stride = head, k_att, k_conv, stride
        self.head_dim = out_planes // head
        self.padding_att = (k_att - 1) // 2

        self.rate1 = nn.Parameter(torch.full((1,), 0.5))
        self.rate2 = nn.Parameter(torch.full((1,), 0.5))
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv2 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv3 = nn.Conv2d(in_planes, out_planes, kernel_size=1)
        self.conv_p = nn.Conv2d(2, self.head_dim, kernel_size=1)
        self.fc = nn.Conv2d(3 * head, k_conv * k_conv, kernel_size=1, bias=False)
        self.dep_conv = ShiftConv(self.head_dim, out_planes, k_conv, stride, shift)

    @property
    def min_input(self) -> int:
        """Smallest map reflection padding accepts: padding < size."""
        return self.padding_att + 1

    def positional(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """conv_p over the coordinate grid: (1, head_dim, h, w); depends on weights and size only."""
        grid = position_grid(h, w, device)
        if self.conv_p.weight.dtype != grid.dtype:  # float64 models (exactness checks); float32: untouched
            grid = grid.to(self.conv_p.weight.dtype)
        return self.conv_p(grid)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Eq. 9-10 with the official relative position term, by unfolding k_att^2 neighbours."""
        b, c, h, w = q.shape
        s, ka, hd = self.stride, self.kernel_att, self.head_dim
        ho, wo = out_size(h, s), out_size(w, s)
        pe = self.positional(h, w, q.device)
        q_att = q.reshape(b * self.head, hd, h, w) * hd**-0.5
        k_att = k.reshape(b * self.head, hd, h, w)
        v_att = v.reshape(b * self.head, hd, h, w)
        q_pe = pe
        if s > 1:
            q_att = q_att[:, :, ::s, ::s]
            q_pe = pe[:, :, ::s, ::s]
        pad = [self.padding_att] * 4

        def neighbours(t: torch.Tensor) -> torch.Tensor:
            cols = F.unfold(F.pad(t, pad, mode="reflect"), ka, stride=s)
            return cols.view(t.shape[0], hd, ka * ka, ho, wo)

        logits = (q_att.unsqueeze(2) * (neighbours(k_att) + q_pe.unsqueeze(2) - neighbours(pe))).sum(1)
        att = logits.softmax(dim=1)
        out = (att.unsqueeze(1) * neighbours(v_att)).sum(2)
        return out.reshape(b, self.out_planes, ho, wo)

    def conv_path(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """fc over the 3*heads stacked head pieces -> k_conv^2 maps per head-dim channel -> shift-sum."""
        b, c, h, w = q.shape
        stacked = torch.cat(
            [t.reshape(b, self.head, self.head_dim, h * w) for t in (q, k, v)], dim=1
        )  # (b, 3*head, head_dim, hw)
        f_all = self.fc(stacked)  # (b, k_conv^2, head_dim, hw)
        f_conv = f_all.permute(0, 2, 1, 3).reshape(b, -1, h, w)  # channel = d * k_conv^2 + j
        return self.dep_conv(f_conv)

    def check_size(self, h: int, w: int) -> None:
        """One line (not a reflection-pad crash) for a map below the minimum k_att's padding allows."""
        if min(h, w) < self.min_input:
            raise AcmixError(
                f"ACmix map {h}x{w} is smaller than {self.min_input} px, the minimum reflection padding "
                f"of k_att={self.kernel_att} allows"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        self.check_size(h, w)
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        return self.rate1 * self.attention(q, k, v) + self.rate2 * self.conv_path(q, k, v)

    def extra_repr(self) -> str:
        return (
            f"in={self.in_planes}, out={self.out_planes}, k_att={self.kernel_att}, heads={self.head}, "
            f"k_conv={self.kernel_conv}, stride={self.stride}"
        )


def acmix_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(module path, block) of every ACmix block of a model, whatever its family: every mixing block that owns a shift conv (`dep_conv`, the ACmix conv path: Swin window
    attention, PVT attention, SAN's SAM with acmix=True), so a new family's blocks count without an
    edit here. Deploy forms own a plain Conv2d there and do not count."""
    return [(n, m) for n, m in model.named_modules() if isinstance(getattr(m, "dep_conv", None), ShiftConv)]
