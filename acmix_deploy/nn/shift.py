"""Shift-and-sum of the ACmix convolution path (paper section 4.3, Fig. 3).

Three implementations of the same operator:
* ``tensor``: explicit shifts of zero-padded maps (Fig. 3a);
* ``fixed``: a grouped convolution whose kernels are frozen one-hot shifts (Fig. 3c.I);
* ``group``: the same grouped convolution with learnable kernels initialised to the shifts
  (Fig. 3c.II-III); after training this is a general grouped convolution (the default, and what the
  official code trains).

The grouped convolution is called ``dep_conv`` (official checkpoint key) and has no bias: the official
init helper returns None and assigns it to the bias.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from acmix_deploy.errors import AcmixError

SHIFT_MODES = ("group", "fixed", "tensor")


def shift_kernel(out_channels: int, k: int) -> torch.Tensor:
    """One-hot shift kernels, shape (out_channels, k*k, k, k): input map i of a group moves by
    (i // k - k // 2, i % k - k // 2)."""
    kernel = torch.zeros(k * k, k, k)
    for i in range(k * k):
        kernel[i, i // k, i % k] = 1.0
    return kernel.repeat(out_channels, 1, 1, 1)


def is_shift_kernel(weight: torch.Tensor) -> bool:
    """True when a dep_conv weight holds exactly the one-hot shift kernels."""
    out_channels, k2, k, _ = weight.shape
    if k2 != k * k:
        return False
    return bool(torch.equal(weight.detach().cpu().float(), shift_kernel(out_channels, k)))


class ShiftConv(nn.Module):
    """The conv path's shift-and-sum over (B, groups * k*k, H, W) maps -> (B, out_channels, H', W').

    Its only state is ``weight`` (key ``dep_conv.weight`` in the official checkpoints); ``fixed`` and
    ``tensor`` keep it frozen and refuse weights that are not one-hot shifts.
    """

    def __init__(self, groups: int, out_channels: int, k: int = 3, stride: int = 1, mode: str = "group"):
        super().__init__()
        if mode not in SHIFT_MODES:
            raise AcmixError(f"unknown shift mode {mode!r}; choose one of {', '.join(SHIFT_MODES)}")
        if k % 2 != 1:
            raise AcmixError(f"k_conv must be odd, got {k}")
        self.groups, self.out_channels, self.k, self.stride, self.mode = groups, out_channels, k, stride, mode
        self.weight = nn.Parameter(shift_kernel(out_channels, k), requires_grad=mode == "group")
        self._register_load_state_dict_pre_hook(self._check_loaded_weight)

    def _check_loaded_weight(self, state_dict, prefix, *args, **kwargs) -> None:
        key = prefix + "weight"
        if self.mode != "group" and key in state_dict and state_dict[key].shape == self.weight.shape:
            if not is_shift_kernel(state_dict[key]):
                raise AcmixError(
                    f"{key} holds learned (non one-hot) kernels; shift={self.mode!r} only expresses "
                    "one-hot shifts: use shift='group'"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.k // 2
        if self.mode != "tensor":
            return F.conv2d(x, self.weight, None, self.stride, pad, 1, self.groups)
        # Explicit shifts: out_g = sum_i shift_i(x_{g,i}); every output of a group is the same map.
        b, _, h, w = x.shape
        k2 = self.k * self.k
        padded = F.pad(x, (pad, pad, pad, pad)).view(b, self.groups, k2, h + 2 * pad, w + 2 * pad)
        summed = sum(
            padded[:, :, i, i // self.k : i // self.k + h, i % self.k : i % self.k + w] for i in range(k2)
        )
        if self.stride > 1:
            summed = summed[:, :, :: self.stride, :: self.stride]
        return summed.repeat_interleave(self.out_channels // self.groups, dim=1)

    def extra_repr(self) -> str:
        return f"groups={self.groups}, out={self.out_channels}, k={self.k}, stride={self.stride}, mode={self.mode}"
