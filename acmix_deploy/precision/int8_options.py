"""Choices of the int8 commands, importable without onnxruntime (for the CLI's --help)."""

from __future__ import annotations

from enum import Enum

# Chosen with scripts/int8_split_study.py (a trained two-block ACmix proxy on digits, seeds 0-2; numbers
# in the README): keep-ends best on one seed, tied on one, within 0.9 points on the third; percentile
# and minmax close, entropy the least consistent. See int8.py.
DEFAULT_METHOD = "percentile"
DEFAULT_SPLIT = "keep-ends"


class Method(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


class Split(str, Enum):
    keep_ends = "keep-ends"
    no_grouped = "no-grouped"
    no_attention = "no-attention"
    all = "all"


class Rest(str, Enum):
    fp16 = "fp16"
    fp32 = "fp32"
