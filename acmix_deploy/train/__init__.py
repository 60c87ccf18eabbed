"""Training and data preparation: ImageFolder data, the standard recipe, exact resume, torchrun.

Public entry points: `prepare` + `train` (loop.py), `write_digits` (digits.py).
"""

from acmix_deploy.train.config import TrainConfig
from acmix_deploy.train.digits import write_digits
from acmix_deploy.train.loop import TrainResult, prepare, train

__all__ = ["TrainConfig", "TrainResult", "prepare", "train", "write_digits"]
