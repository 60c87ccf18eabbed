"""Deploy form of PVT / PVT-ACmix blocks: the same function as nn/pvt_attention.py, shaped for engines.

* The attention scale folds into q (and inversely into the ACmix fc's q weights); rate1 folds into
  proj, rate2 into fc (the conv path is linear after q, k, v).
* The ACmix conv path is linear, so it splits into a q part on the full grid and a k / v part run on
  the r x r reduced grid as one ConvTranspose (dep_conv after nearest upsampling, exactly): no
  upsampled copy of k and v is made (PVTConvPath).
* Spatial shapes are constants of the input size given at conversion (no data-dependent shapes).

Submodule names feed the profile's block classifier (acmix_deploy/archs/pvt_parts.py): q, sr, norm,
kv (stage I), attention, conv_path.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from acmix_deploy.nn.layers import linear as _linear
from acmix_deploy.nn.pvt import PVTBlock
from acmix_deploy.nn.pvt_attention import SRAttention


def _depthwise(weight: torch.Tensor) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[0], weight.shape[0], 3, 1, 1, groups=weight.shape[0], bias=False, dtype=weight.dtype)
    conv.weight.data.copy_(weight)
    return conv


class PVTAttentionPath(nn.Module):
    """softmax(q k^T) v over all heads, then proj (rate1 folded): (B, N, C), (B, N', 2C) -> (B, N, C)."""

    def __init__(self, ref: SRAttention, out_scale: float):
        super().__init__()
        self.heads, self.head_dim = ref.num_heads, ref.head_dim
        self.proj = _linear(ref.proj.weight.detach() * out_scale, ref.proj.bias.detach() * out_scale)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        b, n, c = q.shape
        nh, hd = self.heads, self.head_dim
        q = q.reshape(b, n, nh, hd).transpose(1, 2)
        k, v = kv.reshape(b, -1, 2, nh, hd).permute(2, 0, 3, 1, 4).unbind(0)
        out = torch.matmul(torch.matmul(q, k.transpose(-1, -2)).softmax(dim=-1), v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


def _upsampled_kernel(kernel: torch.Tensor, r: int) -> torch.Tensor:
    """3x3 kernels (..., 3, 3) of a zero-padded conv that runs after nearest upsampling by r, as the
    (..., r + 2, r + 2) kernels of one ConvTranspose (stride r, padding 1) on the reduced grid. Exact:
    output pixel I reads reduced pixel i through tap t = I + 1 - r * i, and the taps of the 3x3 kernel
    that land in that pixel's r x r copy are those with 0 <= t - 1 + dy < r; pixels outside the grid
    are zeros in both forms."""
    t = torch.arange(r + 2)
    cover = torch.stack([(t - 1 + dy >= 0) & (t - 1 + dy < r) for dy in (-1, 0, 1)]).to(kernel.dtype)
    return torch.einsum("...yx,ya,xb->...ab", kernel, cover, cover)


def _pieces_to_maps(kernel: torch.Tensor, fc: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    fc_bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The maps one group of dep_conv reads, for P pieces (rows `weight` (P, hd, Cin), `bias` (P, hd))
    mixed by the fc columns `fc` (9, P) plus `fc_bias` (9,), and then dep_conv `kernel` (hd, heads, 9, 3, 3).

    fc's bias is fc applied to one more piece that is constant one (zero weights, bias 1): through
    the zero-padded conv that gives the reference's border exactly, with no constant map to add.
    Where the pieces are at most 9, they are the maps and fc folds into the kernel (fewer inputs per
    group); otherwise the maps are fc's 9 outputs, fc composed into the projection.
    Returns the projection (hd * maps, Cin) and its bias in group order (d * maps + j), and the grouped
    kernel (hd * heads, maps, 3, 3).
    """
    hd, heads = kernel.shape[:2]
    if fc_bias is not None:
        weight = torch.cat([weight, weight.new_zeros(1, *weight.shape[1:])])
        bias = torch.cat([bias, bias.new_ones(1, hd)])
        fc = torch.cat([fc, fc_bias[:, None]], dim=1)
    if fc.shape[1] <= 9:
        folded = torch.einsum("dmkyx,kp->dmpyx", kernel, fc)
        return (weight.transpose(0, 1).reshape(-1, weight.shape[2]), bias.t().reshape(-1),
                folded.reshape(hd * heads, -1, 3, 3))
    proj = torch.einsum("kp,pdc->dkc", fc, weight).reshape(-1, weight.shape[2])
    return proj, torch.einsum("kp,pd->dk", fc, bias).reshape(-1), kernel.reshape(hd * heads, 9, 3, 3)


class PVTConvPath(nn.Module):
    """The ACmix conv path from q rows (pre-scaled) and the rows the kv projection reads -> (B, H * W, C).

    The path is linear, so it splits into a q part on the full grid and a k / v part on the reduced
    grid, each one grouped conv (groups = head_dim) with fc folded in where that leaves fewer inputs
    per group (_pieces_to_maps):
    * q part: a 3x3 conv over q in group order (one constant-index Gather; none with one head, where
      the conv is depthwise);
    * k / v part: the conv path's own projection of the reduced rows (kv, or fc composed with it, its
      outputs already in group order), then dep_conv-after-upsampling as one ConvTranspose (stride r)
      on the reduced grid: no upsampled copy of k and v is ever made (ONNX Runtime's Expand / Resize
      of them cost more than the conv);
    * r = 1: q, k and v read the same rows: one projection to the maps, one grouped conv.
    The own projections keep the attention's kv output single-consumer
    (TensorRT-RTX's compiler crashed otherwise). The result leaves as rows by one NCHW -> NHWC
    transpose, which ONNX Runtime fuses into the conv's output reorder.
    """

    def __init__(self, ref: SRAttention, h: int, w: int, q_scale: float):
        super().__init__()
        nh, hd, r, c = ref.num_heads, ref.head_dim, ref.sr_ratio, ref.dim
        self.h, self.w, self.r = h, w, r
        dtype = ref.q.weight.dtype
        rate2 = ref.rate2.detach().double()
        fc = ref.fc.weight.detach().double().reshape(9, 3 * nh) * rate2
        fc_bias = ref.fc.bias.detach().double() * rate2 if ref.fc.bias is not None else None
        kernel = ref.dep_conv.weight.detach().double().reshape(hd, nh, 9, 3, 3)
        weight = torch.cat([ref.q.weight, ref.kv.weight]).detach().double().reshape(3 * nh, hd, c)
        biases = [torch.zeros(nh * hd) if m.bias is None else m.bias.detach() for m in (ref.q, ref.kv)]
        bias = torch.cat(biases).double().reshape(3 * nh, hd)
        self.q_maps: nn.Linear | None = None
        self.up_conv: nn.ConvTranspose2d | None = None
        self.register_buffer("q_order", None, persistent=False)
        if r == 1:  # every piece from the same rows
            proj, proj_bias, grouped = _pieces_to_maps(kernel, fc, weight, bias, fc_bias)
            self.kv = _linear(proj.to(dtype), proj_bias.to(dtype))
        else:
            eye = torch.eye(c, dtype=torch.float64).reshape(nh, hd, c)  # q rows as pieces of themselves
            zeros = torch.zeros(nh, hd, dtype=torch.float64)
            proj, _, grouped = _pieces_to_maps(kernel, fc[:, :nh] / q_scale, eye, zeros, None)
            if grouped.shape[1] == nh:  # q itself, reordered: a Gather, not a MatMul
                order = proj.argmax(1)
                self.q_order = None if nh == 1 else order
            else:
                self.q_maps = _linear(proj.to(dtype), None)
            proj, proj_bias, kv_kernel = _pieces_to_maps(kernel, fc[:, nh:], weight[nh:], bias[nh:], fc_bias)
            self.kv = _linear(proj.to(dtype), proj_bias.to(dtype))
            maps = kv_kernel.shape[1]
            up = _upsampled_kernel(kv_kernel.reshape(hd, nh, maps, 3, 3).transpose(1, 2), r)
            self.up_conv = nn.ConvTranspose2d(hd * maps, c, r + 2, stride=r, padding=1, groups=hd, bias=False, dtype=dtype)
            self.up_conv.weight.data.copy_(up.reshape(hd * maps, nh, r + 2, r + 2).to(dtype))
        self.dep_conv = nn.Conv2d(grouped.shape[1] * hd, c, 3, 1, 1, groups=hd, bias=False, dtype=dtype)
        self.dep_conv.weight.data.copy_(grouped.to(dtype))

    @staticmethod
    def _grid(rows: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B, h * w, C) rows -> (B, C, h, w) maps."""
        return rows.transpose(1, 2).reshape(rows.shape[0], -1, h, w)

    def forward(self, q: torch.Tensor, kv_in: torch.Tensor) -> torch.Tensor:
        """q rows (full grid, pre-scaled) and the rows the kv projection reads (the reduced, normalised
        tokens where r > 1; every token, cls first, at r = 1)."""
        h, w, r = self.h, self.w, self.r
        b, n = q.shape[0], h * w
        if r == 1:
            if kv_in.shape[1] != n:  # drop the cls row (last stage); no Slice otherwise
                kv_in = kv_in[:, kv_in.shape[1] - n :]
            out = self.dep_conv(self._grid(self.kv(kv_in), h, w))
        else:
            maps = (q if self.q_maps is None else self.q_maps(q)).transpose(1, 2)
            if self.q_order is not None:
                maps = maps.index_select(1, self.q_order)
            out = self.dep_conv(maps.reshape(b, -1, h, w)) + self.up_conv(self._grid(self.kv(kv_in), h // r, w // r))
        return out.permute(0, 2, 3, 1).reshape(b, n, -1)


class SRAttentionDeploy(nn.Module):
    """Spatial-reduction attention (plus the ACmix conv path) for a fixed H x W grid; rows in, rows out."""

    def __init__(self, ref: SRAttention, h: int, w: int):
        super().__init__()
        scale = float(ref.scale)
        self.h, self.w, self.sr_ratio = h, w, ref.sr_ratio
        self.q = _linear(ref.q.weight.detach() * scale, None if ref.q.bias is None else ref.q.bias.detach() * scale)
        if ref.sr_ratio > 1:
            self.sr, self.norm = ref.sr, ref.norm
        self.kv = ref.kv
        rate1 = float(ref.rate1.detach()) if ref.acmix else 1.0
        self.attention = PVTAttentionPath(ref, rate1)
        self.conv_path = PVTConvPath(ref, h, w, scale) if ref.acmix else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q(x)
        kv_in = x
        if self.sr_ratio > 1:
            b, _, c = x.shape
            reduced = self.sr(x.transpose(1, 2).reshape(b, c, self.h, self.w)).flatten(2).transpose(1, 2)
            kv_in = self.norm(reduced)
        out = self.attention(q, self.kv(kv_in))
        if self.conv_path is None:
            return out
        conv = self.conv_path(q, kv_in)
        cls = out.shape[1] - self.h * self.w
        if cls:  # the cls rows get no conv term (a Concat: a Pad here crashed TensorRT-RTX's builder)
            return torch.cat([out[:, :cls], out[:, cls:] + conv], dim=1)
        return out + conv


class PVTBlockDeploy(nn.Module):
    """A PVT block with the deploy attention; drop path is the identity at inference."""

    def __init__(self, ref: PVTBlock, h: int, w: int):
        super().__init__()
        self.norm1, self.norm2, self.mlp = ref.norm1, ref.norm2, ref.mlp
        self.attn = SRAttentionDeploy(ref.attn, h, w)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
