"""The training form of the ResNet-ACmix block: the reference's parameters, keys and function, with
gradients, computed the way the deploy form computes (DESIGN.md section 2), but from the live
parameters every step.

What differs from the reference `ACmix` (all exact in real arithmetic, so outputs and every
parameter's gradient agree to rounding):

* stage I is one 1x1 conv from the concatenated q / k / v weights, its output channels ordered
  dim-major (d, q|k|v, head), so the conv path's stacked pieces are a view, not a concatenation;
  1/sqrt(head_dim) is folded into the q rows of that weight (a weight-sized op) and undone in fc's
  q columns;
* attention is blocked halo attention (nn/local_attention.py's geometry: blocks of b x b queries,
  one gathered square of keys per block, a constant additive mask), never k_att^2 copies; the
  position term is subtracted from the keys (q . pe_q is constant over a query's window and cancels
  in the softmax, also in its gradient), with pe = conv_p(grid) recomputed every step, so conv_p
  stays learnable;
* the conv path is fc as one broadcast matmul straight into dep_conv's grouped layout (no permute,
  no shifted copies) and dep_conv with rate2 folded into its weight; rate1 is applied in the final
  fused multiply-add.

`to_form(model, "fast" | "reference")` swaps the blocks of a model in place, sharing the parameter
tensors, so an optimizer built afterwards (or before) sees the same parameters in the same order and
checkpoints of either form load into the other. It knows no family: every training form registers
itself with `register_train_form` (this module registers ACmixTrain; a family registers the forms of
its own blocks through its registry.Family, e.g. Swin's nn/swin_train.WindowAttentionTrain).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.acmix import ACmix, out_size
from acmix_deploy.nn.local_attention import HaloGeometry, halo_geometry

FORMS = ("fast", "reference")
DEFAULT_FORM = "fast"

# Reference block class -> its training form (a subclass with `from_reference(block)`, which may return
# None for a block without a training form, and `to_reference()`); filled by register_train_form.
_TRAIN_FORMS: dict[type, Any] = {}


def register_train_form(train_cls: Any) -> Any:
    """Register a training form for its direct base class, the reference block (idempotent; usable
    as a class decorator)."""
    _TRAIN_FORMS[train_cls.__bases__[0]] = train_cls
    return train_cls


def choose_train_block(height: int, width: int, k: int, stride: int) -> tuple[int, str]:
    """Query block and halo mode for training: 4 x 4 query blocks with clipped ("unique") halos, or one
    block on maps of fewer than 4 outputs a side. Measured per block (forward + backward, CPU): within
    the machine's noise of the best of 2 / 3 / 4 / 8 / whole-map blocks in either halo mode on the
    ResNet-ACmix maps (k_att 7 at 8-32 px, k_att 3 at 4-8 px); whole-map blocks lose up to 5x on
    32 px maps and 2 x 2 blocks up to 2x (16x more gathered keys)."""
    return min(4, out_size(height, stride), out_size(width, stride)), "unique"


@dataclass(frozen=True)
class _Halo:
    """Index tensors and mask of one map size on one device (from nn/local_attention.py's geometry)."""

    geometry: HaloGeometry
    query_index: torch.Tensor | None  # None: the queries are the map itself in block order already
    key_index: torch.Tensor
    output_index: torch.Tensor | None
    mask: torch.Tensor


def _is_identity(index: torch.Tensor, n: int) -> bool:
    return index.numel() == n and bool((index == torch.arange(n)).all())


def _halo(height: int, width: int, k: int, stride: int, device: torch.device, dtype: torch.dtype) -> _Halo:
    block, mode = choose_train_block(height, width, k, stride)
    geo = halo_geometry(height, width, k, stride, block, mode)
    query = torch.from_numpy(geo.query_index)
    output = torch.from_numpy(geo.output_index)
    return _Halo(
        geo,
        None if _is_identity(query, height * width) else query.to(device),
        torch.from_numpy(geo.key_index).to(device),
        None if _is_identity(output, geo.n_blocks * block * block) else output.to(device),
        # float32 under autocast: log(multiplicity) would round in bf16 (it is added in place to the logits)
        torch.from_numpy(geo.mask).to(device=device, dtype=torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype),
    )


@register_train_form
class ACmixTrain(ACmix):
    """`ACmix` with a fast, exact forward (and hence backward); same parameters and state-dict keys."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._halos: dict[tuple, _Halo] = {}

    @classmethod
    def from_reference(cls, block: ACmix) -> ACmixTrain:
        """A training-form block sharing `block`'s parameter tensors (no new random numbers drawn)."""
        with torch.random.fork_rng(devices=[]):
            fast = cls(block.in_planes, block.out_planes, block.kernel_att, block.head, block.kernel_conv,
                       block.stride, shift=block.dep_conv.mode)
        share_tensors(block, fast)
        return fast

    def to_reference(self) -> ACmix:
        """The reference block sharing this block's parameter tensors."""
        with torch.random.fork_rng(devices=[]):
            ref = ACmix(self.in_planes, self.out_planes, self.kernel_att, self.head, self.kernel_conv,
                        self.stride, shift=self.dep_conv.mode)
        share_tensors(self, ref)
        return ref

    @torch.compiler.disable  # numpy geometry, cached per size: kept out of torch.compile graphs
    def halo(self, h: int, w: int, device: torch.device, dtype: torch.dtype) -> _Halo:
        key = (h, w, device, dtype)
        if key not in self._halos:
            self._halos[key] = _halo(h, w, self.kernel_att, self.stride, device, dtype)
        return self._halos[key]

    def _stage_one(self, x: torch.Tensor) -> torch.Tensor:
        """q (scaled by 1/sqrt(head_dim)), k, v as one channels-last 1x1 conv: (B, H * W, head_dim, 3, heads)."""
        c, nh, hd = self.out_planes, self.head, self.head_dim
        scale = hd**-0.5
        weight = torch.stack([self.conv1.weight * scale, self.conv2.weight, self.conv3.weight])  # (3, C, Cin, 1, 1)
        bias = torch.stack([self.conv1.bias * scale, self.conv2.bias, self.conv3.bias])  # (3, C)
        # rows (t, head, d) -> (d, t, head): the conv path's stacked pieces become a view
        weight = weight.reshape(3, nh, hd, -1).permute(2, 0, 1, 3).reshape(3 * c, self.in_planes, 1, 1)
        bias = bias.reshape(3, nh, hd).permute(2, 0, 1).reshape(3 * c)
        out = F.conv2d(x.contiguous(memory_format=torch.channels_last), weight, bias)
        h, w = x.shape[-2:]
        return out.permute(0, 2, 3, 1).reshape(-1, h * w, hd, 3, nh)  # a view: the conv wrote NHWC

    def _attention(self, qkv: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Blocked halo attention over the stage-I output -> (B, heads, Ho * Wo, head_dim)."""
        nh, hd = self.head, self.head_dim
        halo = self.halo(h, w, qkv.device, qkv.dtype)
        geo = halo.geometry
        bb = geo.block * geo.block
        pe = self.positional(h, w, qkv.device).view(1, hd, h * w, 1).transpose(1, 2)  # (1, HW, hd, 1)
        q, k, v = qkv.unbind(3)  # (B, HW, hd, heads) each
        rows = lambda t: t.permute(0, 3, 1, 2)  # -> (B, heads, HW, hd), a view  # noqa: E731
        qr = rows(q)
        qb = qr.contiguous() if halo.query_index is None else qr.index_select(2, halo.query_index)
        qb = qb.view(-1, nh, geo.n_blocks, bb, hd)
        kb = rows(k - pe).index_select(2, halo.key_index).view(-1, nh, geo.n_blocks, geo.halo_size, hd)
        vb = rows(v).index_select(2, halo.key_index).view(-1, nh, geo.n_blocks, geo.halo_size, hd)
        logits = torch.matmul(qb, kb.transpose(-1, -2))
        logits += halo.mask  # in place: matmul's backward needs its inputs, not its output
        att = torch.matmul(logits.softmax(dim=-1), vb).view(-1, nh, geo.n_blocks * bb, hd)
        return att if halo.output_index is None else att.index_select(2, halo.output_index)

    def _conv_path(self, qkv: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """fc as one matmul into dep_conv's grouped channels-last layout, then dep_conv (rate2 folded in)."""
        nh, hd, kc = self.head, self.head_dim, self.kernel_conv
        fc = self.fc.weight.view(kc * kc, 3, nh)
        fc = torch.cat([fc[:, :1] * hd**0.5, fc[:, 1:]], dim=1).view(kc * kc, 3 * nh)  # undo q's scale
        f = torch.mm(qkv.reshape(-1, 3 * nh), fc.t())  # (B * HW * hd, k^2): channel d * k^2 + j, NHWC
        f = f.view(-1, h, w, hd * kc * kc).permute(0, 3, 1, 2)  # NCHW shape, channels-last memory
        if self.dep_conv.mode == "tensor":
            return self.rate2 * self.dep_conv(f.contiguous())
        return F.conv2d(f, self.dep_conv.weight * self.rate2, None, self.stride, kc // 2, 1, hd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        self.check_size(h, w)
        qkv = self._stage_one(x)
        conv = self._conv_path(qkv, h, w)
        b, c, ho, wo = conv.shape
        att = self._attention(qkv, h, w).transpose(1, 2).reshape(b, ho, wo, c).permute(0, 3, 1, 2)
        return torch.addcmul(conv, att, self.rate1).contiguous()


def share_tensors(src: nn.Module, dst: nn.Module) -> None:
    """Make `dst` use `src`'s submodules, parameters and buffers (same objects, same order)."""
    for name, module in src.named_children():
        setattr(dst, name, module)
    for name, param in src.named_parameters(recurse=False):
        setattr(dst, name, param)
    for name, buf in src.named_buffers(recurse=False):
        setattr(dst, name, buf)
    dst.train(src.training)


def _train_form_of(module: nn.Module) -> Any:
    """The registered training form for `module`'s class (or a base of it), None if it has none or is one."""
    if isinstance(module, tuple(_TRAIN_FORMS.values())):
        return None
    return next((_TRAIN_FORMS[k] for k in type(module).__mro__ if k in _TRAIN_FORMS), None)


def _convert(module: nn.Module, form: str) -> nn.Module | None:
    """The other form of one ACmix block, or None if it is already in `form` (or has no training form)."""
    if form == "reference":
        return module.to_reference() if isinstance(module, tuple(_TRAIN_FORMS.values())) else None
    train_cls = _train_form_of(module)
    return None if train_cls is None else train_cls.from_reference(module)


def to_form(model: nn.Module, form: str) -> nn.Module:
    """Put every ACmix block of `model` that has a registered training form in `form` ("fast" or
    "reference"), in place, sharing parameters and buffers; returns `model`."""
    if form not in FORMS:
        raise AcmixError(f"unknown training form {form!r}; choose one of {', '.join(FORMS)}")
    for name, module in list(model.named_modules()):
        new = _convert(module, form) if name else None
        if new is not None:
            parent_path, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_path) if parent_path else model, attr, new)
    return model


def form_of(model: nn.Module) -> str:
    """"fast" when any ACmix block is in a (registered) training form, else "reference"."""
    forms = tuple(_TRAIN_FORMS.values())
    return "fast" if any(isinstance(m, forms) for m in model.modules()) else "reference"


__all__ = ["ACmixTrain", "DEFAULT_FORM", "FORMS", "choose_train_block", "form_of", "register_train_form", "to_form"]
