"""Training and data preparation: ImageFolder data, the standard recipe, exact resume, torchrun.

Public entry points: `prepare` + `train` (loop.py), `write_digits` (digits.py). Names resolve lazily,
so `acmix-deploy data digits` (digits.py: numpy and PIL) does not import torch and the training loop.
"""

from __future__ import annotations

from acmix_deploy._lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "acmix_deploy.train.config",
    "TrainResult": "acmix_deploy.train.loop",
    "prepare": "acmix_deploy.train.loop",
    "train": "acmix_deploy.train.loop",
    "write_digits": "acmix_deploy.train.digits",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
