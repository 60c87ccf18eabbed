"""Learned ACmix path weights per layer (the paper's Fig. 5): |rate1|, |rate2|, log|rate1 / rate2|.

Works on any checkpoint of any ACmix family: the pairs are found by state-dict key (every key ending
in "rate1" with a "rate2" beside it), in the checkpoint's own (network) order, so no model has to be
built and families added later (SAN-ACmix) need nothing here.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from acmix_deploy.errors import AcmixError
from acmix_deploy.fileio import atomic_path


@dataclass(frozen=True)
class RatePair:
    block: str  # the module path holding rate1 / rate2
    rate1: float  # attention path weight
    rate2: float  # convolution path weight

    @property
    def log_ratio(self) -> float | None:
        """log |rate1 / rate2| (natural log); None where either rate is exactly zero."""
        if self.rate1 == 0 or self.rate2 == 0:
            return None
        return math.log(abs(self.rate1 / self.rate2))

    def to_dict(self) -> dict:
        return {**asdict(self), "log_abs_ratio": self.log_ratio}


def rate_pairs(state_dict: dict) -> list[RatePair]:
    """One RatePair per ACmix block of a state dict, in key order."""
    pairs = []
    for key, value in state_dict.items():
        if not key.endswith("rate1"):
            continue
        prefix = key[: -len("rate1")]
        other = state_dict.get(prefix + "rate2")
        if other is None or value.numel() != 1 or other.numel() != 1:
            continue
        pairs.append(RatePair(prefix.rstrip("."), float(value.reshape(-1)[0]), float(other.reshape(-1)[0])))
    return pairs


def checkpoint_rates(path: str | os.PathLike[str], required: bool = True) -> list[RatePair]:
    """Rate pairs of a checkpoint file (read with weights_only); `required`: one-line error if none."""
    from acmix_deploy.checkpoint import read_checkpoint

    pairs = rate_pairs(read_checkpoint(path).state_dict)
    if not pairs and required:
        raise AcmixError(f"{path} holds no ACmix rate1 / rate2 pairs (a baseline checkpoint?)")
    return pairs


def write_rates_plot(series: dict[str, list[RatePair]], path: str | os.PathLike[str]) -> Path:
    """PNG in the layout of the paper's Fig. 5: three panels over the layer index, one line per
    checkpoint (label -> its pairs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not series:
        raise AcmixError("nothing to plot: no checkpoint given")
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    panels = (
        ("|rate1| (attention path)", lambda p: abs(p.rate1)),
        ("|rate2| (convolution path)", lambda p: abs(p.rate2)),
        ("log |rate1 / rate2|", lambda p: p.log_ratio),
    )
    for ax, (title, value) in zip(axes, panels):
        for label, pairs in series.items():
            xs = [i + 1 for i, p in enumerate(pairs) if value(p) is not None]
            ax.plot(xs, [value(pairs[i - 1]) for i in xs], marker="o", markersize=3, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("ACmix layer (network order)")
        ax.grid(alpha=0.3)
    axes[2].axhline(0.0, color="#8c8c8c", linewidth=0.8)
    axes[0].legend(fontsize=7)
    fig.suptitle("ACmix path weights per layer (paper Fig. 5)", fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
