"""Building blocks of ACmix networks: the reference block, shift operators, local attention."""

from acmix_deploy.nn.acmix import ACmix, acmix_blocks
from acmix_deploy.nn.shift import SHIFT_MODES, is_shift_kernel, shift_kernel

__all__ = ["ACmix", "acmix_blocks", "SHIFT_MODES", "is_shift_kernel", "shift_kernel"]
