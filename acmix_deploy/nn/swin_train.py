"""The training form of Swin-ACmix window attention: the reference's parameters, buffers, keys and
function; only the conv path is computed another way (exact in real arithmetic).

The window attention itself is already batched matmuls over windows (no unfolds), so it is kept. The
reference conv path permutes the (B, H, W, 3C) projection into (B, 3 * heads, HW, head_dim) for fc,
permutes fc's output into NCHW for dep_conv (a grouped conv, slow in NCHW on CPU) and permutes back.
Here fc is one addmm over each pixel's (head_dim, 3 * heads) pieces, whose output already is dep_conv's
input in channels-last memory (channel d * 9 + j), and dep_conv runs channels-last, so its output is
the (B, H, W, C) map the block wants without another copy (grouped conv forward + backward measured
4-6x faster channels-last than NCHW on 2 CPU threads, ResNet-ACmix shapes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from acmix_deploy.nn.acmix_train import share_tensors
from acmix_deploy.nn.swin import WindowAttention


class WindowAttentionTrain(WindowAttention):
    """`WindowAttention` (acmix=True) with the channels-last conv path; same state-dict keys."""

    @classmethod
    def from_reference(cls, attn: WindowAttention) -> WindowAttentionTrain | None:
        """A training form sharing `attn`'s tensors; None for a plain Swin attention (no conv path)."""
        if not attn.acmix:
            return None
        with torch.random.fork_rng(devices=[]):
            fast = cls(attn.dim, attn.window, attn.num_heads, acmix=True, shift=attn.dep_conv.mode)
        share_tensors(attn, fast)
        return fast

    def to_reference(self) -> WindowAttention:
        """The reference window attention sharing this one's tensors."""
        with torch.random.fork_rng(devices=[]):
            ref = WindowAttention(self.dim, self.window, self.num_heads, acmix=True, shift=self.dep_conv.mode)
        share_tensors(self, ref)
        return ref

    def conv_path(self, qkv: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3C) -> (B, H, W, C), as WindowAttention.conv_path."""
        b, h, w, _ = qkv.shape
        nh, hd = self.num_heads, self.head_dim
        pieces = qkv.reshape(b, h, w, 3 * nh, hd).transpose(3, 4).reshape(-1, 3 * nh)  # rows (pixel, d)
        f = torch.addmm(self.fc.bias, pieces, self.fc.weight.view(9, 3 * nh).t())  # (B*H*W*hd, 9)
        f = f.view(b, h, w, hd * 9).permute(0, 3, 1, 2)  # NCHW shape, channels-last memory
        if self.dep_conv.mode == "tensor":
            return self.dep_conv(f.contiguous()).permute(0, 2, 3, 1)
        return F.conv2d(f, self.dep_conv.weight, None, 1, 1, 1, hd).permute(0, 2, 3, 1)
