"""Parameters and multiply-accumulates, split into ACmix stage I and stage II (paper Table 1).

Conv / matmul MACs come from torch.utils.flop_counter on the reference forward, run on the meta
device (no memory, no arithmetic). The ResNet-ACmix attention is elementwise multiply-and-sum over
k_att^2 neighbours, which the counter does not see; it is added analytically:
2 * C * k_att^2 MACs per output pixel (q.k logits and the weighted sum of v). SAN's aggregation
likewise adds mid * K^2 MACs per pixel (SAN's own counter's rule); SAN's SAMs are listed as blocks in
the baselines too (SAN's stage I / II split exists without ACmix). SAN's util/complexity.py also counts
BatchNorm, ReLU, pooling and biases; this counter does not.
Stage I = the q/k/v projections (ResNet: conv1/conv2/conv3 of the block; Swin: qkv);
stage II = everything else of the block (positional conv, attention, fc, shift conv, Swin's proj).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from acmix_deploy.nn.acmix import ACmix, acmix_blocks, out_size
from acmix_deploy.nn.san import SAM


@dataclass
class BlockStats:
    path: str
    stage1_macs: int
    stage2_macs: int
    rate1: float | None = None
    rate2: float | None = None


@dataclass
class ModelStats:
    name: str
    img_size: int
    params: int
    conv_matmul_macs: int
    attention_macs: int  # the elementwise ResNet-ACmix attention the counter does not see
    blocks: list[BlockStats] = field(default_factory=list)

    @property
    def total_macs(self) -> int:
        return self.conv_matmul_macs + self.attention_macs

    @property
    def stage1_macs(self) -> int:
        return sum(b.stage1_macs for b in self.blocks)

    @property
    def stage2_macs(self) -> int:
        return sum(b.stage2_macs for b in self.blocks)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(total_macs=self.total_macs, stage1_macs=self.stage1_macs, stage2_macs=self.stage2_macs)
        return d


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _stage1_children(block: nn.Module) -> tuple[str, ...]:
    if hasattr(block, "stage1_children"):  # a family's own (PVT: q, and sr + norm + kv for k and v)
        return tuple(block.stage1_children)
    return ("conv1", "conv2", "conv3") if isinstance(block, (ACmix, SAM)) else ("qkv",)


def _blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """ACmix blocks, plus SAN's SAMs without the conv path (SAN baselines have a stage I / II split too)."""
    found = dict(acmix_blocks(model))
    return [(n, m) for n, m in model.named_modules() if n in found or isinstance(m, SAM)]


def _unseen_macs(block: nn.Module, h: int, w: int) -> int:
    """Elementwise multiply-and-sum the counter does not see: local attention or SAN's aggregation."""
    if isinstance(block, SAM):
        return block.out_planes * block.kernel_size**2 * h * w
    return _elementwise_attention_macs(block, h, w) if isinstance(block, ACmix) else 0


def _elementwise_attention_macs(block: ACmix, h: int, w: int) -> int:
    ho, wo = out_size(h, block.stride), out_size(w, block.stride)
    return 2 * block.out_planes * block.kernel_att**2 * ho * wo


def model_stats(name: str, img_size: int | None = None, model: nn.Module | None = None, **overrides) -> ModelStats:
    """Stats for a registered model at `img_size` (batch 1). Pass `model` to report its learned rates."""
    from acmix_deploy.registry import create_model, get_card

    size = img_size or get_card(name).input_size
    kw = dict(overrides, img_size=size)
    with torch.device("meta"):
        meta_model = create_model(name, **kw)
    counter = FlopCounterMode(display=False)
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        m.register_forward_pre_hook(lambda mod, args, p=p: sizes.__setitem__(p, tuple(args[0].shape[-2:])))
        for p, m in _blocks(meta_model)
        if isinstance(m, (ACmix, SAM))
    ]
    with counter, torch.no_grad():
        meta_model(torch.empty(1, 3, size, size, device="meta"))
    for h in hooks:
        h.remove()
    flops = {k.split(".", 1)[1] if "." in k else "": v for k, v in counter.get_flop_counts().items()}

    def macs(path: str) -> int:
        return int(sum(flops.get(path, {}).values()) // 2)

    learned = dict(acmix_blocks(model)) if model is not None else {}
    blocks, attention = [], 0
    for path, block in _blocks(meta_model):
        stage1 = sum(macs(f"{path}.{c}") for c in _stage1_children(block))
        extra = _unseen_macs(block, *sizes[path]) if path in sizes else 0
        attention += extra
        rates = (None, None)
        if path in learned and hasattr(learned[path], "rate1"):
            rates = (float(learned[path].rate1.detach()), float(learned[path].rate2.detach()))  # no grad warning
        blocks.append(BlockStats(path, stage1, macs(path) - stage1 + extra, *rates))
    return ModelStats(
        name=name,
        img_size=size,
        params=count_params(meta_model),
        conv_matmul_macs=int(counter.get_total_flops() // 2),
        attention_macs=attention,
        blocks=blocks,
    )
