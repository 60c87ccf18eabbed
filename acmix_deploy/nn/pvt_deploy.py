"""Deploy form of PVT / PVT-ACmix blocks: the same function as nn/pvt_attention.py, shaped for engines.

* The attention scale folds into q (and inversely into the ACmix fc's q weights); rate1 folds into
  proj, rate2 into fc (the conv path is linear after q, k, v).
* The ACmix fc is split by linearity: its q part runs on the full grid, its k / v part (and its bias),
  composed with the kv projection into one Linear, on the r x r reduced grid, and only that 9-map
  result is upsampled, by Expand + Reshape of static shapes (no Resize): fc(q, up(k), up(v)) =
  fc_q(q) + up(fc_kv(k, v)) exactly, because nearest upsampling repeats pixels. Where fc is folded
  into dep_conv the conv path projects k, v itself (a copy of kv, on the reduced grid).
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


class PVTConvPath(nn.Module):
    """The ACmix conv path from q rows (pre-scaled) and the reduced kv rows -> (B, H * W, C) rows.

    Rows go channel-first with 2-D transposes, then to dep_conv's group order (channel d * pieces + j)
    with one constant-index Gather (a 4-D permute here failed TensorRT-RTX's Myelin compiler).
    Where fc does not reduce the channels (3 * heads <= 9: PVT-T/S stages 1-2) it is folded into
    dep_conv (fewer MACs, no fc): the conv reads q and the upsampled k, v pieces directly, and the fc
    bias, which the reference adds before the zero-padded dep_conv, becomes the constant map
    dep_conv(bias). Elsewhere fc runs as one batched MatMul per head_dim channel, its k / v part on the
    reduced grid, and only its 9 maps are upsampled.
    """

    def __init__(self, ref: SRAttention, h: int, w: int, q_scale: float):
        super().__init__()
        nh, hd, r = ref.num_heads, ref.head_dim, ref.sr_ratio
        self.heads, self.head_dim, self.h, self.w, self.r = nh, hd, h, w, r
        rate2 = ref.rate2.detach().double()
        fc_w = ref.fc.weight.detach().double().reshape(9, 3 * nh) * rate2
        fc_w[:, :nh] /= q_scale
        fc_b = ref.fc.bias.detach().double() * rate2 if ref.fc.bias is not None else torch.zeros(9, dtype=torch.float64)
        dtype = ref.q.weight.dtype
        kernel = ref.dep_conv.weight.detach().double()  # (C, 9, 3, 3)
        self.fold_fc = 3 * nh <= 9
        pieces = 3 * nh if self.fold_fc else 9
        # dep_conv's channel order is d * pieces + j; the channel-first maps come in j * hd + d order
        order = torch.arange(pieces * hd).reshape(pieces, hd).t().reshape(-1)
        self.register_buffer("group_order", order, persistent=False)
        self.dep_conv = nn.Conv2d(pieces * hd, ref.dim, 3, 1, 1, groups=hd, bias=False, dtype=dtype)
        self.depthwise = nh == 1  # one head: the folded conv is three depthwise convs (q, k, v pieces)
        if self.fold_fc:
            folded = torch.einsum("ojyx,ji->oiyx", kernel, fc_w)  # (C, 3 heads, 3, 3)
            self.dep_conv.weight.data.copy_(folded.to(dtype))
            if self.depthwise:  # ONNX Runtime ran the 64-group, 3-input conv ~10x slower than this
                del self.dep_conv
                self.dw_q, self.dw_k, self.dw_v = (
                    _depthwise(folded[:, j : j + 1].to(dtype)) for j in range(3)
                )
            bias_in = fc_b.reshape(1, 1, 9, 1, 1).expand(1, hd, 9, h, w).reshape(1, 9 * hd, h, w)
            bias_map = F.conv2d(bias_in, kernel, padding=1, groups=hd)
            self.register_buffer("conv_bias", bias_map.to(dtype).contiguous(), persistent=False)
        else:
            self.dep_conv.weight.data.copy_(kernel.to(dtype))
            self.fc_q = nn.Parameter(fc_w[:, :nh].to(dtype))  # (9, heads)
            # fc's k / v part composed with the kv projection: one Linear to the 9 * hd maps (kpos * hd + d)
            kv_w = ref.kv.weight.detach().double().reshape(2 * nh, hd, -1)
            kv_b = ref.kv.bias.detach().double().reshape(2 * nh, hd)
            weight = torch.einsum("kj,jdc->kdc", fc_w[:, nh:], kv_w).reshape(9 * hd, -1)
            bias = (torch.einsum("kj,jd->kd", fc_w[:, nh:], kv_b) + fc_b.reshape(9, 1)).reshape(-1)
            self.kv = _linear(weight.to(dtype), bias.to(dtype))
        if self.fold_fc:  # its own kv projection (reduced grid: cheap), rows reversed so that the
            # exporter's initializer deduplication and CSE cannot merge it back into the attention's
            flip = torch.arange(2 * ref.dim - 1, -1, -1)
            self.kv = _linear(ref.kv.weight.detach()[flip], ref.kv.bias.detach()[flip])
            c = ref.dim
            order = torch.where(order < c, order, c + (2 * c - 1 - (order - c)))
            self.group_order.copy_(order)

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        """(B, P, Hr * Wr) -> (B, P, H * W): nearest by r, as Expand + Reshape of static shapes."""
        b, p, _ = x.shape
        r, hr, wr = self.r, self.h // self.r, self.w // self.r
        if r == 1:
            return x
        x = x.reshape(b, p, hr, 1, wr, 1).expand(b, p, hr, r, wr, r)
        return x.reshape(b, p, self.h * self.w)

    def forward(self, q: torch.Tensor, kv_in: torch.Tensor) -> torch.Tensor:
        """q rows and the rows the kv projection reads (reduced, normalised tokens where r > 1). The conv
        path has its own projection of them: TensorRT-RTX's compiler crashed when the attention's kv
        output had a second consumer."""
        nh, hd, h, w, r = self.heads, self.head_dim, self.h, self.w, self.r
        b = q.shape[0]
        nr = (h // r) * (w // r)
        # rows -> channel-first (B, C, N) with channel = piece * hd + d: plain 2-D transposes
        if q.shape[1] != h * w:  # drop the cls row (last stage); no Slice otherwise
            q, kv_in = q[:, q.shape[1] - h * w :], kv_in[:, kv_in.shape[1] - nr :]
        q, kv = q.transpose(1, 2), self.kv(kv_in).transpose(1, 2)
        if self.depthwise:  # kv rows were reversed: channels [v reversed, k reversed]
            kv = self._upsample(kv.flip(1)).reshape(b, 2 * hd, h, w)
            out = self.dw_q(q.reshape(b, hd, h, w)) + self.dw_k(kv[:, :hd]) + self.dw_v(kv[:, hd:])
            out = out + self.conv_bias
        elif self.fold_fc:
            maps = torch.cat([q, self._upsample(kv)], dim=1)  # (B, 3C, HW), pieces [q, k, v]
            maps = maps.index_select(1, self.group_order).reshape(b, -1, h, w)
            out = self.dep_conv(maps) + self.conv_bias
        else:  # fc over the pieces of every d: MatMuls over (B, pieces, hd * N)
            f = torch.matmul(self.fc_q, q.reshape(b, nh, hd * h * w)).reshape(b, 9 * hd, h * w)
            f = f + self._upsample(kv)  # channel kpos * hd + d
            out = self.dep_conv(f.index_select(1, self.group_order).reshape(b, 9 * hd, h, w))
        return out.flatten(2).transpose(1, 2)


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
