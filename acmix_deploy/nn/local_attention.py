"""Local (k x k window) self-attention as blocked halo attention: the deploy form of ACmix's
attention path.

The reference unfolds keys, values and positions into k^2 copies per query. Here the output grid is
cut into blocks of b x b queries; every block attends to one square of keys (its *halo*) through a
constant additive mask, so the whole path is Gather -> MatMul -> Add -> Softmax -> MatMul on small
batched matrices, which ONNX Runtime and TensorRT run well.

Two exact ways to respect the reference's reflection padding:

* ``reflect``: halo slots are positions of the reflection-padded map; the padding is folded into the
  gather indices (no Pad node). The mask (0 inside a query's window, -inf outside) is the same for
  every block, so it is one small constant.
* ``unique``: halos are clipped to the unpadded map, and a key that reflection padding repeats m times
  in a query's window gets log(m) added to its logit (sum of m equal exponentials = exp(logit + log m)).
  Halos shrink at the borders (a 7x7 map needs 49 keys instead of 13 x 13), at the price of one mask
  per block.

Nothing here depends on the batch size; the geometry (indices, masks) is fixed by the resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from acmix_deploy.errors import AcmixError

HALO_MODES = ("reflect", "unique")


def _reflect(i: np.ndarray, n: int) -> np.ndarray:
    """Reflection-padding index map (as F.pad(mode='reflect')), clamped beyond one reflection."""
    i = np.abs(i)
    i = np.where(i > n - 1, 2 * (n - 1) - i, i)
    return np.clip(i, 0, n - 1)


@dataclass(frozen=True)
class _Axis:
    """One spatial axis of the halo geometry."""

    n_blocks: int
    halo: int
    starts: np.ndarray  # (n_blocks,) first halo position (padded coords for reflect, else original)
    query_pos: np.ndarray  # (n_blocks, b) input position of each query of a block (clamped)
    counts: np.ndarray  # (n_blocks, b, halo) multiplicity of halo slot l in query i's window
    slot_pos: np.ndarray  # (n_blocks, halo) original position read by halo slot l


def _axis(n: int, k: int, stride: int, b: int, mode: str) -> _Axis:
    pad = (k - 1) // 2
    n_out = (n - 1) // stride + 1
    n_blocks = -(-n_out // b)
    out = np.arange(n_blocks * b).reshape(n_blocks, b)
    out_clamped = np.minimum(out, n_out - 1)
    query_pos = out_clamped * stride
    # window of output o: original positions reflect(o * stride + t - pad), t in [0, k)
    window = _reflect(out_clamped[..., None] * stride + np.arange(k) - pad, n)  # (nb, b, k)
    full = (b - 1) * stride + k
    if mode == "reflect":
        halo = full
        starts = np.arange(n_blocks) * b * stride  # padded coordinates
        padded = starts[:, None] + np.arange(halo)  # (nb, halo) padded positions
        slot_pos = _reflect(padded - pad, n)
        # queries past the output edge (block padding) keep their unclamped pattern, so that the mask
        # is the same for every block; their outputs are never read
        rel = (out[..., None] * stride + np.arange(k))[..., None] - padded[:, None, None, :]
        counts = (rel == 0).sum(axis=2)  # (nb, b, halo): padded window slot t equals halo slot l
    else:
        # the smallest halo that holds every block's (reflected, hence clipped) windows
        lo, hi = window.min(axis=(1, 2)), window.max(axis=(1, 2))
        halo = int((hi - lo).max()) + 1
        starts = np.clip(lo, 0, n - halo)
        slot_pos = starts[:, None] + np.arange(halo)
        counts = (window[..., None] == slot_pos[:, None, None, :]).sum(axis=2)
    if (counts.sum(axis=2) != k).any():
        raise AssertionError("halo does not cover every query window")  # geometry bug, never user input
    return _Axis(n_blocks, halo, starts, query_pos, counts, slot_pos)


@dataclass(frozen=True)
class HaloGeometry:
    """Constant index tensors and mask of a blocked local attention at one resolution."""

    height: int
    width: int
    out_height: int
    out_width: int
    block: int
    n_blocks: int
    halo_size: int
    query_index: np.ndarray  # (n_blocks * b * b,) flat input positions of the queries, block-major
    key_index: np.ndarray  # (n_blocks * halo_size,) flat input positions of the halo keys
    mask: np.ndarray  # (1 or n_blocks, b * b, halo_size) additive float64 mask (0 / log multiplicity / -inf)
    output_index: np.ndarray  # (out_h * out_w,) row of the blocked output for each output pixel


def halo_geometry(height: int, width: int, k: int, stride: int, block: int, mode: str = "reflect") -> HaloGeometry:
    """Indices and mask for k x k attention with reflection padding (k - 1) / 2, at `stride`."""
    if mode not in HALO_MODES:
        raise AcmixError(f"unknown halo mode {mode!r}; choose one of {', '.join(HALO_MODES)}")
    pad = (k - 1) // 2
    if min(height, width) <= pad:
        raise AcmixError(f"map {height}x{width} is too small for k_att={k} reflection padding")
    ay, ax = _axis(height, k, stride, block, mode), _axis(width, k, stride, block, mode)
    b = block
    # queries: (nby, nbx, b, b) -> flat input positions
    qy = ay.query_pos[:, None, :, None]
    qx = ax.query_pos[None, :, None, :]
    query_index = (qy * width + qx).reshape(-1)
    ky = ay.slot_pos[:, None, :, None]
    kx = ax.slot_pos[None, :, None, :]
    key_index = (ky * width + kx).reshape(-1)
    # multiplicity of slot (ly, lx) in the window of query (iy, ix) = cy * cx
    cnt = ay.counts[:, None, :, None, :, None] * ax.counts[None, :, None, :, None, :]  # nby nbx b b Ly Lx
    cnt = cnt.reshape(ay.n_blocks * ax.n_blocks, b * b, ay.halo * ax.halo).astype(np.float64)
    with np.errstate(divide="ignore"):
        mask = np.where(cnt > 0, np.log(np.maximum(cnt, 1.0)), -np.inf)
    if (mask == mask[:1]).all():
        mask = mask[:1]
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    oy, ox = np.arange(out_h)[:, None], np.arange(out_w)[None, :]
    blk = (oy // b) * ax.n_blocks + ox // b
    output_index = (blk * b * b + (oy % b) * b + ox % b).reshape(-1)
    return HaloGeometry(
        height, width, out_h, out_w, b, ay.n_blocks * ax.n_blocks, ay.halo * ax.halo,
        query_index.astype(np.int64), key_index.astype(np.int64), mask, output_index.astype(np.int64),
    )


def choose_block(height: int, width: int, k: int, stride: int) -> tuple[int, str]:
    """Block size and halo mode for one map, from ONNX Runtime CPU measurements (2 threads, ResNet-ACmix
    maps at 224 px): 4 x 4 query blocks with reflect halos on large maps (fewer masked logits than
    8 x 8, fewer gathered keys than 2 x 2), two clipped blocks per side on mid-size maps (a 14 x 14 map
    needs 10 x 10 halos instead of 13 x 13), one block on small maps (a 7 x 7 map attends to its 49
    pixels)."""
    n_out = (min(height, width) - 1) // stride + 1
    if n_out <= 8:
        return n_out, "unique"
    if stride == 1 and n_out < 20:
        return -(-n_out // 2), "unique"
    return 4, "reflect"


class LocalAttention(nn.Module):
    """k x k multi-head local attention with reflection padding as blocked halo attention.

    Inputs are NCHW maps with channel = head * head_dim + d (the reference layout) or, with
    `dim_major`, d * heads + head; the output is always head-major. `q` must already
    carry the 1/sqrt(head_dim) scale and `k` the position term folded in (see nn/deploy.py).
    Output: (B, heads * head_dim, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(
        self,
        heads: int,
        head_dim: int,
        height: int,
        width: int,
        k: int,
        stride: int = 1,
        block: int | None = None,
        mode: str | None = None,
        key_offset: torch.Tensor | None = None,
        dim_major: bool = False,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        auto_block, auto_mode = choose_block(height, width, k, stride)
        block = block or auto_block
        mode = mode or auto_mode
        self.heads, self.head_dim, self.k, self.stride = heads, head_dim, k, stride
        self.height, self.width, self.dim_major = height, width, dim_major
        geo = halo_geometry(height, width, k, stride, block, mode)
        self.block, self.mode, self.geometry = block, mode, geo
        self.register_buffer("query_index", torch.from_numpy(geo.query_index), persistent=False)
        self.register_buffer("key_index", torch.from_numpy(geo.key_index), persistent=False)
        self.register_buffer("output_index", torch.from_numpy(geo.output_index), persistent=False)
        self.register_buffer("mask", torch.from_numpy(geo.mask).to(dtype), persistent=False)
        # (HW, head_dim) term subtracted from every head's keys (the folded position encoding)
        if key_offset is not None:
            key_offset = key_offset.reshape(head_dim, height * width).t().contiguous().to(dtype)
        self.register_buffer("key_offset", key_offset, persistent=False)

    def _rows(self, t: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B * heads, H * W, head_dim)."""
        hw = self.height * self.width
        if self.dim_major:
            return t.reshape(-1, self.head_dim, self.heads, hw).permute(0, 2, 3, 1).reshape(-1, hw, self.head_dim)
        return t.reshape(-1, self.head_dim, hw).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # Gathers, not multi-axis transposes, move rows into blocks: ONNX Runtime runs 6-D transposes
        # slower than a 2-D transpose plus a row gather.
        geo, bb, hd = self.geometry, self.block * self.block, self.head_dim
        kt = self._rows(k)
        if self.key_offset is not None:
            kt = kt - self.key_offset
        qb = self._rows(q).index_select(1, self.query_index).reshape(-1, geo.n_blocks, bb, hd)
        kb = kt.index_select(1, self.key_index).reshape(-1, geo.n_blocks, geo.halo_size, hd)
        vb = self._rows(v).index_select(1, self.key_index).reshape(-1, geo.n_blocks, geo.halo_size, hd)
        logits = torch.matmul(qb, kb.transpose(-1, -2)) + self.mask
        out = torch.matmul(logits.softmax(dim=-1), vb).reshape(-1, geo.n_blocks * bb, hd)
        out = out.index_select(1, self.output_index)  # (B * heads, H' * W', hd), raster order
        return out.transpose(1, 2).reshape(-1, self.heads * hd, geo.out_height, geo.out_width)

    def extra_repr(self) -> str:
        g = self.geometry
        return (
            f"heads={self.heads}, head_dim={self.head_dim}, k={self.k}, stride={self.stride}, "
            f"map={self.height}x{self.width}, block={self.block}, mode={self.mode}, halo={g.halo_size}, "
            f"blocks={g.n_blocks}"
        )

