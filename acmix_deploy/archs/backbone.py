"""What the convolutional families (ResNet, SAN) share around their stages: the minimum input size
check and the classification head (average pool, fc). Not a family (registers none)."""

from __future__ import annotations

import torch
import torch.nn as nn

from acmix_deploy.errors import AcmixError


class PooledBackbone(nn.Module):
    """Stages (`forward_stages`, of the subclass) -> average pool -> `fc`, refusing inputs below the
    smallest size the stages accept (`min_input_size`, of the subclass, with `_size_reason`)."""

    min_size: int

    def min_input_size(self) -> int:
        raise NotImplementedError

    def _size_reason(self) -> str:
        """Why the minimum is what it is, for the one-line refusal."""
        raise NotImplementedError

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def _set_input_size(self, img_size: int) -> None:
        """Compute the minimum input size and refuse a smaller `img_size`."""
        self.min_size = self.min_input_size()
        if img_size < self.min_size:
            raise AcmixError(self._size_message(img_size))
        self.img_size = img_size

    def _size_message(self, size: int) -> str:
        return f"input size {size} px is below the minimum of {self.min_size} px for this model ({self._size_reason()})"

    def _check_input(self, x: torch.Tensor) -> None:
        if min(x.shape[-2:]) < self.min_size:
            raise AcmixError(self._size_message(int(min(x.shape[-2:]))))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_stages(x)[-1])
