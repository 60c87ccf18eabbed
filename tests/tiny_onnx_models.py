"""Tiny ACmix-like models for the precision and TensorRT tests (seconds to train, export and build).

`TinyACmix` has the op mix that matters for precision: conv-bn-relu, three 1x1 convs (stage I),
a MatMul-Softmax-MatMul attention, an fc + grouped 3x3 conv with 9 channels per group (dep_conv),
LayerNorm and a linear classifier. `trained_digits` fits it for a few seconds on scikit-learn's
bundled digits (real data, no download) so int8 agreement numbers mean something.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

DIGITS_SIZE = 8  # model input: the 8x8 digits as they are (crop ratio 1)


class _ACmixMix(nn.Module):
    """rate1 * attention + rate2 * conv path from the three 1x1 projections of x (stage I)."""

    def __init__(self, channels: int, heads: int = 2):
        super().__init__()
        self.heads, self.head_dim = heads, channels // heads
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Conv2d(channels, channels, 1)
        self.conv3 = nn.Conv2d(channels, channels, 1)
        self.fc = nn.Conv2d(3 * heads, 9, 1, bias=False)
        self.dep_conv = nn.Conv2d(9 * self.head_dim, channels, 3, padding=1, groups=self.head_dim, bias=False)
        self.rate1 = nn.Parameter(torch.tensor(0.5))
        self.rate2 = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        # attention path: global attention per head over the h*w positions
        qh = q.reshape(b, self.heads, self.head_dim, h * w).transpose(2, 3)
        kh = k.reshape(b, self.heads, self.head_dim, h * w)
        vh = v.reshape(b, self.heads, self.head_dim, h * w).transpose(2, 3)
        att = (torch.softmax(qh @ kh * self.head_dim**-0.5, -1) @ vh).transpose(2, 3).reshape(b, c, h, w)
        # convolution path: fc over the 3*heads stacked pieces, then the grouped 3x3 conv
        stacked = torch.cat([t.reshape(b, self.heads, self.head_dim, h * w) for t in (q, k, v)], dim=1)
        conv = self.dep_conv(self.fc(stacked).reshape(b, 9 * self.head_dim, h, w))
        return self.rate1 * att + self.rate2 * conv


class TinyACmix(nn.Module):
    def __init__(self, channels: int = 16, heads: int = 2, num_classes: int = 10, size: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        self.mix = _ACmixMix(channels, heads)
        self.norm = nn.LayerNorm(channels)
        self.head = nn.Linear(channels * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.norm((x + self.mix(x)).permute(0, 2, 3, 1))
        return self.head(y.flatten(1))


class _Bottleneck(nn.Module):
    """x + BN(rate1 * attention + rate2 * conv path), then ReLU: an ACmix block with a residual."""

    def __init__(self, channels: int, heads: int = 2):
        super().__init__()
        self.mix = _ACmixMix(channels, heads)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn(self.mix(x)))


class TinyACmixNet(nn.Module):
    """A harder proxy for the int8 study: stem, two ACmix bottlenecks, mean pooling, LayerNorm, fc."""

    def __init__(self, channels: int = 16, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        self.layer1 = _Bottleneck(channels)
        self.layer2 = _Bottleneck(channels)
        self.norm = nn.LayerNorm(channels)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layer2(self.layer1(self.stem(x)))
        return self.head(self.norm(y.mean(dim=(2, 3))))


def export(model: nn.Module, path: Path, size: int, dynamic: bool = True, meta: dict | None = None) -> Path:
    """torch.onnx.export(dynamo=True) with input "images" / output "logits" and export-style metadata."""
    model = model.eval()
    x = torch.randn(2, 3, size, size)
    shapes = {"x": {0: torch.export.Dim("batch", min=1, max=64)}} if dynamic else None
    prog = torch.onnx.export(
        model, (x,), dynamo=True, input_names=["images"], output_names=["logits"], dynamic_shapes=shapes,
        verbose=False,
    )
    prog.save(str(path))
    m = onnx.load(str(path))
    values = {"input_size": size, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop_ratio": 1.0,
              "model_name": "tiny_acmix", **(meta or {})}
    for key, value in values.items():
        m.metadata_props.append(onnx.StringStringEntryProto(key=key, value=json.dumps(value)))
    onnx.save(m, str(path))
    return path


def digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 RGB images (N, 8, 8, 3) and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.clip(d.images / 16.0 * 255.0, 0, 255).astype(np.uint8)
    return np.repeat(imgs[..., None], 3, axis=-1), d.target.astype(np.int64)


@dataclass
class TrainedDigits:
    model: nn.Module
    onnx_path: Path
    heldout_npy: Path  # uint8 NHWC RGB images never used for training (calibration + verification)
    accuracy: float  # of the trained torch model on the held-out images


def trained_digits(
    tmp: Path, steps: int = 60, seed: int = 0, model: nn.Module | None = None, size: int = DIGITS_SIZE
) -> TrainedDigits:
    """Train TinyACmix (or `model`) on 1200 digits for a few seconds; export; the other 597 go to a .npy."""
    from acmix_deploy.preprocess import Preprocessing

    torch.manual_seed(seed)
    images, labels = digits_uint8()
    pre = Preprocessing(size, size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 1.0)
    x = torch.from_numpy(pre.uint8_batch(images))
    y = torch.from_numpy(labels)
    train, test = slice(0, 1200), slice(1200, None)
    model = model if model is not None else TinyACmix(size=size)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only contend (10x slower on a busy 2-core box)
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(0, 1200, (64,), generator=gen)
            loss = nn.functional.cross_entropy(model(x[train][idx]), y[train][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.set_num_threads(threads)
    model.eval()
    with torch.no_grad():
        acc = float((model(x[test]).argmax(1) == y[test]).float().mean())
    onnx_path = export(model, tmp / "tiny_acmix.onnx", size)
    npy = tmp / "digits_heldout.npy"
    np.save(npy, images[test])
    return TrainedDigits(model, onnx_path, npy, acc)


_CACHE: dict[str, object] = {}


def cached_trained(tmp_path_factory) -> TrainedDigits:
    """One trained model per test session, shared by tests/precision and tests/trt."""
    if "trained" not in _CACHE:
        _CACHE["trained"] = trained_digits(tmp_path_factory.mktemp("digits"))
    return _CACHE["trained"]  # type: ignore[return-value]


def static_batch_copy(src: Path, dest: Path, batch: int = 2) -> Path:
    """The same graph with its batch dimension fixed (instead of a second torch export)."""
    m = onnx.load(str(src))
    for vi in list(m.graph.input) + list(m.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_value = batch
    del m.graph.value_info[:]
    onnx.save(m, str(dest))
    return dest
