"""Choices of the int8 commands, importable without onnxruntime (for the CLI's --help)."""

from __future__ import annotations

from enum import Enum

# Measured on the tiny ACmix proxy (see the report / README): see int8.py for what each split does.
DEFAULT_METHOD = "percentile"
DEFAULT_SPLIT = "default"


class Method(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


class Split(str, Enum):
    default = "default"
    no_attention = "no-attention"
    all = "all"
    keep_ends = "keep-ends"


class Rest(str, Enum):
    fp16 = "fp16"
    fp32 = "fp32"
