"""Deploy forms of the ACmix blocks: the same function as the reference blocks, shaped for inference
engines (paper section 4.3 plus exact algebraic folds). Folds are computed in float64 and stored in the
reference's dtype, so a float64 reference gives a float64 deploy form (the exactness tests use that).

ResNet-ACmix block (`ACmixDeploy`), all folds exact in real arithmetic:

* the position term moves into the attention keys (q . pe_q is constant over a query's window and
  cancels in softmax; reflection padding is linear), computed once for the export resolution;
* 1/sqrt(head_dim) moves into conv1 (q) and, inversely, into the conv path's q weights;
* rate1 moves into conv3 (v) (attention output is linear in v), rate2 into the conv path;
* the conv path (fc over the stacked head pieces, then the shift conv dep_conv) is linear. Three exact
  forms: ``split`` (default: fc as a grouped 1x1 conv with the scales folded in, then dep_conv),
  ``grouped`` (fc folded into dep_conv: one grouped 3x3 conv with 3 * heads inputs per group), and
  ``dense`` (composed with the q/k/v projections: one dense 3x3 conv from the block input plus a constant
  map for the projection biases seen through dep_conv's zero padding). In ONNX Runtime CPU (2 threads,
  benchmarks/export_latency.py) split and grouped are within 2 % of each other, split ahead; dense is
  ~15 % slower end to end. ``shift="tensor"`` keeps fc and sums explicitly shifted maps instead (paper
  Table 7);
* attention is blocked halo attention (nn/local_attention.py), no k^2 copies.

Swin-ACmix window attention (`WindowAttentionDeploy`) and blocks (`SwinBlockDeploy`): the cyclic shift
becomes constant gather indices (window partition of the rolled map) and slicing for the conv path, the
relative position bias and the shifted-window mask are one constant, scale and rates are folded.

`switch_to_deploy(model, img_size)` returns a converted deep copy; the reference model is untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.acmix import ACmix, out_size
from acmix_deploy.nn.local_attention import LocalAttention

CONV_FORMS = ("split", "grouped", "dense")
DEFAULT_CONV_FORM = "split"  # fastest end to end in ONNX Runtime CPU, 2 threads (export_latency.py)


# --------------------------------------------------------------------------------------------------
# ResNet-ACmix
# --------------------------------------------------------------------------------------------------
def _conv1x1(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=bias is not None, dtype=weight.dtype)
    conv.weight.data.copy_(weight.reshape(conv.weight.shape))
    if bias is not None:
        conv.bias.data.copy_(bias)
    return conv


def _folded_shift_weight(block: ACmix) -> torch.Tensor:
    """rate2 * (dep_conv o fc) as a grouped conv weight (C, 3 * heads, k, k), float64.

    Group d (= head-dim index) reads the 3 * heads pieces (t, h) -> t[h * head_dim + d] in the order
    i = t * heads + h (the reference fc's input order); output channel o belongs to group o // heads.
    """
    k = block.kernel_conv
    dep = block.dep_conv.weight.detach().double()  # (C, k*k, k, k): group in channel j = fc output j
    fc = block.fc.weight.detach().double().reshape(k * k, 3 * block.head)  # (k*k, 3 heads)
    return block.rate2.detach().double() * torch.einsum("ojab,ji->oiab", dep, fc)


class DenseConvPath(nn.Module):
    """The whole conv path as one dense 3x3 conv from the block input, plus a constant map holding the
    q/k/v biases seen through dep_conv's zero padding (absent when those biases are zero)."""

    def __init__(self, block: ACmix, height: int, width: int):
        super().__init__()
        c, heads, hd, k, s = block.out_planes, block.head, block.head_dim, block.kernel_conv, block.stride
        w_shift = _folded_shift_weight(block)  # (C, 3 heads, k, k)
        d_of_o = torch.arange(c) // heads
        weights = torch.zeros(c, block.in_planes, k, k, dtype=torch.float64)
        bias_kernel = torch.zeros(c, 1, k, k, dtype=torch.float64)
        for t, proj in enumerate((block.conv1, block.conv2, block.conv3)):
            w_t = proj.weight.detach().double().reshape(c, -1)
            b_t = proj.bias.detach().double()
            for h in range(heads):
                rows = h * hd + d_of_o  # projection row feeding piece (t, h) of output channel o's group
                piece = w_shift[:, t * heads + h]  # (C, k, k)
                weights += piece[:, None] * w_t[rows][:, :, None, None]
                bias_kernel[:, 0] += piece * b_t[rows][:, None, None]
        dtype = block.conv1.weight.dtype
        self.conv = nn.Conv2d(block.in_planes, c, k, s, k // 2, bias=True, dtype=dtype)
        ones = torch.ones(1, 1, height, width, dtype=torch.float64)
        bias_map = F.conv2d(ones, bias_kernel, None, s, k // 2, 1, 1)  # (1, C, Ho, Wo)
        interior = bias_map[0, :, bias_map.shape[2] // 2, bias_map.shape[3] // 2]
        self.conv.weight.data.copy_(weights)
        self.conv.bias.data.copy_(interior)
        border = (bias_map - interior[None, :, None, None]).to(dtype)
        self.register_buffer("border_bias", border if border.abs().max() > 0 else None, persistent=False)

    def forward(self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out if self.border_bias is None else out + self.border_bias


def _stack_pieces(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, hd: int) -> torch.Tensor:
    """Dim-major (channel d * heads + h) q, k, v -> (B, hd * 3 * heads, H, W), group d = [q_d, k_d, v_d].
    The (B, hd, heads, HW) views are the attention path's too (the exporter shares them)."""
    h, w = q.shape[-2:]
    parts = [t.reshape(-1, hd, heads, h * w) for t in (q, k, v)]
    return torch.cat(parts, dim=2).reshape(-1, hd * 3 * heads, h, w)


def _fc_conv(block: ACmix, q_scale: float, v_scale: float) -> nn.Conv2d:
    """fc as a grouped 1x1 conv over the stacked pieces (3 * heads -> k^2 per head-dim group), with
    rate2 and the inverse q / v scales of stage I folded in."""
    heads, hd, k = block.head, block.head_dim, block.kernel_conv
    fc = block.fc.weight.detach().double().reshape(k * k, 3 * heads) * block.rate2.detach().double()
    fc[:, :heads] /= q_scale
    fc[:, 2 * heads :] /= v_scale
    conv = nn.Conv2d(hd * 3 * heads, hd * k * k, 1, groups=hd, bias=False, dtype=block.conv1.weight.dtype)
    conv.weight.data.copy_(fc[None].expand(hd, -1, -1).reshape(hd * k * k, 3 * heads, 1, 1))
    return conv


def sum_shifted(f: torch.Tensor, groups: int, k: int) -> torch.Tensor:
    """The one-hot shift conv written out (paper Fig. 3a): (B, groups * k^2, H, W) -> (B, groups, H, W),
    the sum over i of map i of each group moved by (i // k - k // 2, i % k - k // 2), zero padded."""
    h, w = f.shape[-2:]
    p = k // 2
    padded = F.pad(f, (p, p, p, p)).reshape(-1, groups, k * k, h + 2 * p, w + 2 * p)
    total = padded[:, :, 0, 0:h, 0:w]
    for i in range(1, k * k):
        dy, dx = divmod(i, k)
        total = total + padded[:, :, i, dy : dy + h, dx : dx + w]
    return total


class GroupedConvPath(nn.Module):
    """fc folded into dep_conv: one grouped 3x3 conv (groups = head_dim, 3 * heads inputs each) over the
    stacked pieces; stage I writes its channels dim-major so the stacking is a plain Concat."""

    def __init__(self, block: ACmix, q_scale: float, v_scale: float):
        super().__init__()
        c, heads, hd, k = block.out_planes, block.head, block.head_dim, block.kernel_conv
        self.heads, self.head_dim = heads, hd
        w = _folded_shift_weight(block)
        w[:, :heads] /= q_scale  # pieces come from the scaled q
        w[:, 2 * heads :] /= v_scale  # and the rate1-scaled v
        self.dep_conv = nn.Conv2d(hd * 3 * heads, c, k, block.stride, k // 2, groups=hd, bias=False,
                                  dtype=block.conv1.weight.dtype)
        self.dep_conv.weight.data.copy_(w)

    def forward(self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.dep_conv(_stack_pieces(q, k, v, self.heads, self.head_dim))


class SplitConvPath(nn.Module):
    """fc and dep_conv kept as two convs (scales and rate2 folded into fc): a grouped 1x1 conv
    (3 * heads -> k^2 per head-dim group) then the reference grouped 3x3 dep_conv (k^2 -> heads).
    Fewer MACs than the folded conv: ONNX Runtime's grouped conv expands every input of a group into
    k^2 rows, so 9 inputs per group beat 3 * heads = 12."""

    def __init__(self, block: ACmix, q_scale: float, v_scale: float):
        super().__init__()
        c, heads, hd, k = block.out_planes, block.head, block.head_dim, block.kernel_conv
        self.heads, self.head_dim = heads, hd
        self.fc = _fc_conv(block, q_scale, v_scale)
        self.dep_conv = nn.Conv2d(hd * k * k, c, k, block.stride, k // 2, groups=hd, bias=False,
                                  dtype=block.conv1.weight.dtype)
        self.dep_conv.weight.data.copy_(block.dep_conv.weight.detach())

    def forward(self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.dep_conv(self.fc(_stack_pieces(q, k, v, self.heads, self.head_dim)))


class ShiftTensorConvPath(nn.Module):
    """Explicit-shift form (paper Fig. 3a / Table 7): fc as a grouped 1x1 conv, then the sum of k^2
    zero-padded shifted slices; every output of a group is that sum (broadcast in the final Add)."""

    def __init__(self, block: ACmix, q_scale: float, v_scale: float):
        super().__init__()
        self.heads, self.head_dim, self.k, self.stride = block.head, block.head_dim, block.kernel_conv, block.stride
        self.fc = _fc_conv(block, q_scale, v_scale)

    def forward(self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        f = self.fc(_stack_pieces(q, k, v, self.heads, self.head_dim))  # (B, hd * k*k, H, W)
        total = sum_shifted(f, self.head_dim, self.k)
        if self.stride > 1:
            total = total[:, :, :: self.stride, :: self.stride]
        return total.unsqueeze(2)  # (B, hd, 1, Ho, Wo): broadcasts over the heads outputs of a group


class ACmixDeploy(nn.Module):
    """Deploy form of one ResNet-ACmix block at a fixed input resolution (same outputs as `ACmix`)."""

    def __init__(
        self,
        block: ACmix,
        height: int,
        width: int,
        conv_form: str = DEFAULT_CONV_FORM,
        attn_block: int | None = None,
        attn_mode: str | None = None,
    ):
        super().__init__()
        if conv_form not in CONV_FORMS:
            raise AcmixError(f"unknown conv form {conv_form!r}; choose one of {', '.join(CONV_FORMS)}")
        if min(height, width) < block.min_input:
            raise AcmixError(f"ACmix map {height}x{width} is below the {block.min_input} px reflection padding needs")
        c, heads, hd = block.out_planes, block.head, block.head_dim
        self.out_planes, self.heads, self.head_dim = c, heads, hd
        self.height, self.width = height, width
        self.out_height, self.out_width = out_size(height, block.stride), out_size(width, block.stride)
        tensor_shift = block.dep_conv.mode == "tensor"
        if tensor_shift:
            conv_form = "grouped"  # stage I feeds the explicit shifts through fc
        self.conv_form = "tensor" if tensor_shift else conv_form
        q_scale = hd**-0.5
        rate1 = float(block.rate1.detach())
        self.use_attention = rate1 != 0.0
        v_scale = rate1 if self.use_attention else 1.0
        # Stage I: grouped / tensor conv paths want dim-major channels (d * heads + h) for a plain Concat.
        dim_major = self.conv_form != "dense"
        order = torch.arange(c).reshape(heads, hd).t().reshape(-1) if dim_major else torch.arange(c)
        scales = (q_scale, 1.0, v_scale)
        for name, ref, scale in zip(("conv1", "conv2", "conv3"), (block.conv1, block.conv2, block.conv3), scales):
            w = ref.weight.detach().reshape(c, -1)[order] * scale
            b = ref.bias.detach()[order] * scale
            setattr(self, name, _conv1x1(w, b))
        if self.use_attention:
            with torch.no_grad():
                pe = block.positional(height, width, block.conv_p.weight.device).detach()  # (1, hd, H, W)
            self.attention = LocalAttention(
                heads, hd, height, width, block.kernel_att, block.stride, attn_block, attn_mode,
                key_offset=pe, dim_major=dim_major, dtype=pe.dtype,
            )
        if self.conv_form == "dense":
            self.conv_path = DenseConvPath(block, height, width)
        elif self.conv_form == "grouped":
            self.conv_path = GroupedConvPath(block, q_scale, v_scale)
        elif self.conv_form == "split":
            self.conv_path = SplitConvPath(block, q_scale, v_scale)
        else:
            self.conv_path = ShiftTensorConvPath(block, q_scale, v_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.height, self.width):
            raise AcmixError(
                f"deploy ACmix block built for {self.height}x{self.width} got {x.shape[-2]}x{x.shape[-1]}"
            )
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        conv = self.conv_path(x, q, k, v)
        if self.conv_form == "tensor":
            shape = (-1, self.head_dim, self.heads, self.out_height, self.out_width)
            if not self.use_attention:  # every output of a group is its shifted sum
                return conv.expand(shape).reshape(-1, self.out_planes, self.out_height, self.out_width)
            base = self.attention(q, k, v).reshape(shape)
            return (base + conv).reshape(-1, self.out_planes, self.out_height, self.out_width)
        if not self.use_attention:
            return conv
        return self.attention(q, k, v) + conv

    def extra_repr(self) -> str:
        return f"map={self.height}x{self.width}, conv_form={self.conv_form}"


# --------------------------------------------------------------------------------------------------
# Conversion of whole models
# --------------------------------------------------------------------------------------------------
def _input_sizes(model: nn.Module, img_size: int, kinds: tuple[type, ...]) -> dict[str, tuple[int, int]]:
    """Input (H, W) of every module of `kinds`, from one forward pass of a shape-only (meta) copy."""
    shadow = copy.deepcopy(model).to("meta")
    sizes: dict[str, tuple[int, int]] = {}

    def hook(name: str):
        return lambda mod, args: sizes.__setitem__(name, (int(args[0].shape[-2]), int(args[0].shape[-1])))

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in shadow.named_modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            dtype = next(shadow.parameters()).dtype
            shadow(torch.zeros(1, 3, img_size, img_size, device="meta", dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    return sizes


def _set_module(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


# Network class -> its family's deploy switch, fn(private copy, img_size, **options) -> model; filled by
# archs/family.register_family from each family's registration (archs/<family>.py). Models of no registered
# family (hand-built networks of ACmix blocks) get `switch_acmix_blocks`.
_DEPLOY_SWITCHES: dict[type, Callable[..., nn.Module]] = {}


def register_deploy_switch(network: type, switch: Callable[..., nn.Module]) -> None:
    """Make `switch` convert models of class `network` (and its subclasses)."""
    _DEPLOY_SWITCHES[network] = switch


def switch_acmix_blocks(model: nn.Module, img_size: int, **options: Any) -> nn.Module:
    """Replace every ResNet-ACmix block (`ACmix`) of `model` (converted in place: pass a copy) by its
    deploy form for an input of `img_size` px; options: conv_form (CONV_FORMS), attn_block, attn_mode."""
    blocks = [(n, m) for n, m in model.named_modules() if isinstance(m, ACmix)]
    if not blocks:
        return model
    sizes = _input_sizes(model, img_size, (ACmix,))
    for name, block in blocks:
        h, w = sizes[name]
        device = block.conv1.weight.device
        _set_module(model, name, ACmixDeploy(block, h, w, **options).to(device))
    return model


def switch_to_deploy(model: nn.Module, img_size: int | None = None, **options: Any) -> nn.Module:
    """A deep copy of `model` in its deploy form, by its family's registered switch (the reference model
    is untouched).

    `img_size` defaults to the model card's input size; options are the family's (ResNet: conv_form,
    attn_block, attn_mode; SAN: san_form). Models without ACmix blocks come back as a plain eval-mode
    copy (or their family's deploy form, e.g. plain Swin's constant-index windows).
    """
    if img_size is None:
        img_size = int(getattr(getattr(model, "card", None), "input_size", 224))
    deployed = copy.deepcopy(model).eval()
    switch = next((_DEPLOY_SWITCHES[k] for k in type(deployed).__mro__ if k in _DEPLOY_SWITCHES), switch_acmix_blocks)
    return switch(deployed, img_size, **options)
