"""Building blocks of ACmix networks: the reference block, shift operators, local attention."""

from acmix_deploy.nn.acmix import ACmix, acmix_blocks
from acmix_deploy.nn.deploy import ACmixDeploy, switch_to_deploy
from acmix_deploy.nn.local_attention import LocalAttention
from acmix_deploy.nn.shift import SHIFT_MODES, is_shift_kernel, shift_kernel

__all__ = [
    "ACmix", "ACmixDeploy", "LocalAttention", "acmix_blocks", "switch_to_deploy",
    "SHIFT_MODES", "is_shift_kernel", "shift_kernel",
]
