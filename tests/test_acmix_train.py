"""The training form of the ResNet-ACmix block (nn/acmix_train.py) against the reference block:
outputs and every parameter's gradient, random shapes, both dtypes, both devices; form switching."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.acmix import ACmix, out_size
from acmix_deploy.nn.acmix_train import ACmixTrain, form_of, to_form
from acmix_deploy.parity import FP32_TOL

CUDA = pytest.param(
    "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
)


def _randomise(block: ACmix, seed: int) -> None:
    """Weights of unit-ish scale everywhere (rates too), so no term of the block is negligible."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)


def _run(block: torch.nn.Module, x: torch.Tensor, upstream: torch.Tensor):
    block.zero_grad(set_to_none=True)
    y = block(x)
    (y * upstream).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in block.named_parameters() if p.requires_grad}
    return y.detach(), grads


def _worst(ref: ACmix, fast: ACmixTrain, x: torch.Tensor) -> tuple[float, dict[str, float]]:
    """max |fast - ref| / max |ref| of the output and of every parameter's gradient.

    conv_p.bias is the one exception to the scale: its exact gradient is zero (the bias shifts every
    key of a window by the same vector, which the softmax cancels), so both forms give rounding noise
    and it is measured on conv_p.weight's gradient scale (the same sum, weighted by the grid)."""
    gen = torch.Generator(device="cpu").manual_seed(1)
    h, w = x.shape[-2:]
    shape = (x.shape[0], ref.out_planes, out_size(h, ref.stride), out_size(w, ref.stride))
    upstream = torch.randn(shape, generator=gen, dtype=x.dtype).to(x.device)
    y_ref, g_ref = _run(ref, x, upstream)
    y_fast, g_fast = _run(fast, x, upstream)
    assert g_ref.keys() == g_fast.keys()
    rel = {"output": float((y_fast - y_ref).abs().max() / y_ref.abs().max())}
    for name, g in g_ref.items():
        scale = g.abs().max()
        if name == "conv_p.bias":
            scale = torch.maximum(scale, g_ref["conv_p.weight"].abs().max())
        rel[name] = float((g_fast[name] - g).abs().max() / scale)
    return max(rel.values()), rel


def _pair(cin, heads, head_dim, k_att, stride, shift, dtype, device, seed=0):
    ref = ACmix(cin, heads * head_dim, k_att, heads, stride=stride, shift=shift).to(device=device, dtype=dtype)
    _randomise(ref, seed)
    return ref, ACmixTrain.from_reference(ref)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    cin=st.integers(1, 6),
    heads=st.integers(1, 4),
    head_dim=st.integers(1, 4),
    k_att=st.sampled_from([3, 5, 7]),
    stride=st.sampled_from([1, 2]),
    shift=st.sampled_from(["group", "group", "fixed", "tensor"]),
    data=st.data(),
)
def test_fast_form_matches_reference_float64(cin, heads, head_dim, k_att, stride, shift, data):
    pad = (k_att - 1) // 2
    h = data.draw(st.integers(pad + 1, 19), label="height")
    w = data.draw(st.integers(pad + 1, 19), label="width")
    batch = data.draw(st.integers(1, 2), label="batch")
    ref, fast = _pair(cin, heads, head_dim, k_att, stride, shift, torch.float64, "cpu")
    x = torch.randn(batch, cin, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(h * 31 + w))
    worst, rel = _worst(ref, fast, x)
    assert worst <= 1e-10, rel


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize(
    "cin,heads,head_dim,k_att,stride,h,w",
    [(16, 4, 4, 7, 1, 25, 23), (8, 2, 8, 7, 2, 13, 15), (12, 4, 3, 3, 1, 9, 8), (8, 4, 2, 5, 2, 31, 30)],
)
def test_fast_form_matches_reference_float32(device, cin, heads, head_dim, k_att, stride, h, w):
    """float32 on every device: the tolerance rule (max |diff| <= 1e-4 x max |ref|) for the output and
    each gradient."""
    ref, fast = _pair(cin, heads, head_dim, k_att, stride, "group", torch.float32, device)
    x = torch.randn(2, cin, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    worst, rel = _worst(ref, fast, x)
    assert worst <= FP32_TOL, rel


@pytest.mark.slow
def test_whole_model_forms_agree_float64():
    """ResNet-ACmix-26 (k_att 7 at 100 px: reflect halos on the 25 px maps, one clipped block on the
    small ones): loss and every parameter's gradient of the whole network."""
    from acmix_deploy.registry import create_model

    torch.manual_seed(0)
    models = {}
    for form in ("reference", "fast"):
        torch.manual_seed(0)
        models[form] = to_form(create_model("resnet_acmix26", width=4, img_size=100, num_classes=5), form).double()
    x = torch.randn(1, 3, 100, 100, dtype=torch.float64)
    y = torch.tensor([3])
    grads, losses = {}, {}
    for form, model in models.items():
        model.train()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        losses[form] = loss.item()
        grads[form] = {n: p.grad for n, p in model.named_parameters()}
    assert abs(losses["fast"] - losses["reference"]) <= 1e-10 * abs(losses["reference"])
    for name, g in grads["reference"].items():
        scale = g.abs().max()
        if name.endswith("conv_p.bias"):
            scale = torch.maximum(scale, grads["reference"][name.replace("bias", "weight")].abs().max())
        assert (grads["fast"][name] - g).abs().max() <= 1e-10 * scale, name


def test_to_form_shares_parameters_and_keys_and_draws_no_random_numbers():
    from acmix_deploy.registry import create_model

    model = create_model("resnet_acmix26", width=8, k_att=3, img_size=32, num_classes=3)
    before = [(n, p) for n, p in model.named_parameters()]
    keys = list(model.state_dict())
    rng = torch.get_rng_state()
    assert to_form(model, "fast") is model and form_of(model) == "fast"
    assert torch.equal(rng, torch.get_rng_state())
    blocks = [m for m in model.modules() if isinstance(m, ACmix)]
    assert blocks and all(isinstance(m, ACmixTrain) for m in blocks)
    after = list(model.named_parameters())
    assert [n for n, _ in after] == [n for n, _ in before]
    assert all(p is q for (_, p), (_, q) in zip(after, before))  # an optimizer built before keeps working
    assert list(model.state_dict()) == keys
    to_form(model, "reference")
    assert form_of(model) == "reference" and not any(isinstance(m, ACmixTrain) for m in model.modules())
    assert all(p is q for (_, p), (_, q) in zip(model.named_parameters(), before))
    with pytest.raises(AcmixError, match="unknown training form"):
        to_form(model, "turbo")


def test_fast_form_refuses_small_maps():
    block = ACmixTrain(4, 4, k_att=7, head=2)
    with pytest.raises(AcmixError, match="smaller than 4 px"):
        block(torch.randn(1, 4, 3, 9))


@pytest.mark.slow
@pytest.mark.parametrize("first,second", [("fast", "reference"), ("reference", "fast")])
def test_checkpoint_continues_in_the_other_form(first, second, tmp_path):
    """2 SGD steps in one form, saved (weights + optimizer state) and loaded into a fresh model of each
    form: the third step's loss agrees across forms (float64: 1e-10 relative)."""
    from acmix_deploy.checkpoint import read_checkpoint, save_checkpoint
    from acmix_deploy.registry import create_model

    def build(form):
        torch.manual_seed(0)
        model = to_form(create_model("resnet_acmix26", width=4, k_att=3, img_size=32, num_classes=4), form)
        return model.double().train()

    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 3, 32, 32, dtype=torch.float64, generator=gen), torch.tensor([0, 1, 2, 3]))
               for _ in range(3)]

    def step(model, opt, batch):
        loss = F.cross_entropy(model(batch[0]), batch[1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    model = build(first)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    for batch in batches[:2]:
        step(model, opt, batch)
    save_checkpoint(model, tmp_path / "two.pth", extra={"optimizer": opt.state_dict()})
    loaded = read_checkpoint(tmp_path / "two.pth")
    third = {}
    for form in (first, second):
        fresh = build(form)
        fresh.load_state_dict(loaded.state_dict, strict=True)
        fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        fresh_opt.load_state_dict(loaded.meta["optimizer"])
        third[form] = step(fresh, fresh_opt, batches[2])
    assert abs(third[second] - third[first]) <= 1e-10 * abs(third[first]), third


def _swin_loss_and_grads(model, x, y, form):
    to_form(model, form)
    assert form_of(model) == form
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("heads,window,shift", [(3, 2, "group"), (2, 2, "tensor")])
def test_swin_fast_conv_path_matches_reference(device, dtype, heads, window, shift):
    """Swin-ACmix (shifted windows in the second block): loss and every gradient of both forms.

    float64: 1e-10 relative. float32: each gradient's error against the float64 reference within the
    tolerance rule, or at most 4x the float32 reference's own error (rate1 / rate2 gradients are sums
    over every pixel that cancel to ~1e-4 of their terms, so float32 rounding alone exceeds 1e-4 there)."""
    from acmix_deploy.registry import create_model

    if device == "cuda" and dtype == torch.float64:
        pytest.skip("float64 is checked on the CPU")
    torch.manual_seed(0)
    model = create_model("swin_acmix_t", width=6 * heads, heads=heads, window=window, depths=[2, 1, 1, 1],
                         img_size=16 * window, num_classes=5, shift=shift).double()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.3)
    x = torch.randn(2, 3, 16 * window, 16 * window, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.tensor([1, 4])
    truth = _swin_loss_and_grads(model, x, y, "reference")
    model.to(device=device, dtype=dtype)
    x, y = x.to(device=device, dtype=dtype), y.to(device)
    ref = _swin_loss_and_grads(model, x, y, "reference")
    fast = _swin_loss_and_grads(model, x, y, "fast")
    tol = 1e-10 if dtype == torch.float64 else FP32_TOL
    assert abs(fast[0] - truth[0]) <= tol * abs(truth[0])
    assert fast[1].keys() == truth[1].keys()
    for name, g in truth[1].items():
        g = g.to(device)
        err_fast = (fast[1][name].to(g.dtype) - g).abs().max()
        limit = tol * g.abs().max()
        if dtype != torch.float64:
            limit = torch.maximum(limit, 4 * (ref[1][name].to(g.dtype) - g).abs().max())
        assert err_fast <= limit, name
