"""Stand-in models for the bench/profile tests until the real registry and exporter land.

TinyNet mimics ResNet-ACmix naming: an ACmix-like module at layerN.i.conv2 with children conv1/
conv2/conv3 (stage I), attention (attention path), fc + dep_conv (conv path). The factories are
module-level functions so functools.partial of them pickles into spawned child processes.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from acmix_deploy.onnx_names import module_path
from acmix_deploy.bench.sources import ModelSource


class Attention(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, c, h, w = q.shape
        att = torch.softmax(q.flatten(2).transpose(1, 2) @ k.flatten(2), dim=-1)
        return (att @ v.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)


class MixBlock(nn.Module):
    """ACmix-shaped: 1x1 q/k/v, global attention, fc + grouped dep_conv, two rates."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 1)
        self.conv2 = nn.Conv2d(c, c, 1)
        self.conv3 = nn.Conv2d(c, c, 1)
        self.attention = Attention()
        self.fc = nn.Conv2d(3 * c, 9 * c, 1, bias=False)
        self.dep_conv = nn.Conv2d(9 * c, c, 3, padding=1, groups=c, bias=False)
        self.rate1 = nn.Parameter(torch.tensor(0.5))
        self.rate2 = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        return self.rate1 * self.attention(q, k, v) + self.rate2 * self.dep_conv(self.fc(torch.cat([q, k, v], 1)))


class Bottleneck(nn.Module):
    def __init__(self, c: int, acmix: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 1)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = MixBlock(c) if acmix else nn.Conv2d(c, c, 3, padding=1)
        self.conv3 = nn.Conv2d(c, c, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.conv3(self.conv2(self.relu(self.bn1(self.conv1(x))))))


class TinyNet(nn.Module):
    def __init__(self, width: int = 8, depth: int = 2, acmix: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.layer1 = nn.Sequential(*[Bottleneck(width, acmix) for _ in range(depth)])
        self.fc = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer1(self.conv1(x)).mean((2, 3)))


class DeployableTinyNet(TinyNet):
    """Has a deploy() method like the ACmix models (records that it was called)."""

    deployed = False

    def deploy(self) -> DeployableTinyNet:
        self.deployed = True
        return self


def make_tiny(width: int = 8, depth: int = 2, acmix: bool = True, deployable: bool = True, seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return (DeployableTinyNet if deployable else TinyNet)(width, depth, acmix).eval()


class Broken(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("broken stand-in")


def make_broken() -> nn.Module:
    return Broken()


def export(model: nn.Module, path: Path, img_size: int, naming: str = "dotted") -> Path:
    """Dynamic-batch ONNX via the TorchScript exporter; naming "dotted" renames nodes to the
    project convention "<module.path>/<Op>_<n>", "torchscript" keeps "/layer1/layer1.0/.../Conv"."""
    x = torch.randn(1, 3, img_size, img_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), str(path), input_names=["images"], output_names=["logits"],
            dynamic_axes={"images": {0: "N"}, "logits": {0: "N"}}, dynamo=False, opset_version=17,
        )  # fmt: skip
    if naming == "dotted":
        proto = onnx.load(str(path))
        for i, node in enumerate(proto.graph.node):
            path_ = module_path(node.name)
            node.name = f"{path_}/{node.op_type}_{i}" if path_ else f"{node.op_type}_{i}"
        onnx.save(proto, str(path))
    return path


def _export_named(name: str, img_size: int, workdir: Path) -> Path:
    return export(_FACTORIES[name](), Path(workdir) / f"{name}.onnx", img_size)


_FACTORIES = {
    "tiny_acmix": functools.partial(make_tiny, acmix=True),
    "tiny_plain": functools.partial(make_tiny, acmix=False, deployable=False),
    "tiny_acmix_wide": functools.partial(make_tiny, width=16, acmix=True),
}


def resolver(name: str, img_size: int | None = None, shift: str | None = None) -> ModelSource:
    """Stand-in for acmix_deploy.bench.sources.resolve_model."""
    from acmix_deploy.errors import AcmixError

    if name not in _FACTORIES:
        raise AcmixError(f"unknown model {name!r}")
    size = img_size or 16
    return ModelSource(
        label=f"{name}[shift={shift}]" if shift else name,
        name=name,
        torch_factory=_FACTORIES[name],
        onnx_factory=functools.partial(_export_named, name, size),
        input_size=(size, size),
        overrides={"shift": shift} if shift else {},
    )


def synthetic_result():
    """A BenchResult with known numbers (no timing): model twice as slow as the baseline on
    onnxruntime, torch-eager model only, tensorrt unavailable."""
    from acmix_deploy.bench.machine import machine_info
    from acmix_deploy.bench.memory import MemoryStats
    from acmix_deploy.bench.run import BenchConfig, BenchResult, BenchRow
    from acmix_deploy.bench.stats import summarize

    cfg = BenchConfig(
        model="tiny_acmix", onnx=None, engine=None, backends=("onnxruntime", "torch-eager", "tensorrt"),
        batches=(1, 4), img_size=16, warmup_s=2.0, warmup_iterations=None, duration_s=None, iterations=4,
        threads=2, baseline="tiny_plain", shift=None, cuda_graph=False, include_transfers=False, memory=True,
        device="cpu",
    )  # fmt: skip
    rows = []
    for batch in (1, 4):
        m = summarize([2.0 * batch, 2.0 * batch, 2.2 * batch, 1.8 * batch], batch)
        b = summarize([1.0 * batch, 1.0 * batch, 1.1 * batch, 0.9 * batch], batch)
        mem = MemoryStats(peak_rss_mb=300.0 + batch, base_rss_mb=100.0)
        rows.append(BenchRow("model", "tiny_acmix", "onnxruntime", batch, "ok", stats=m, memory=mem, ratio=2.0, median_ratio=2.0))
        rows.append(BenchRow("baseline", "tiny_plain", "onnxruntime", batch, "ok", stats=b, memory=mem))
        rows.append(BenchRow("model", "tiny_acmix", "torch-eager", batch, "ok", stats=summarize([5.0, 5.0, 5.0, 5.0], batch)))
        rows.append(BenchRow("baseline", "tiny_plain", "torch-eager", batch, "failed", "RuntimeError: boom"))
    for batch in (1, 4):
        for role, label in (("model", "tiny_acmix"), ("baseline", "tiny_plain")):
            rows.append(BenchRow(role, label, "tensorrt", batch, "unavailable", "TensorRT needs a CUDA GPU; none found"))
    return BenchResult(
        config=cfg, rows=rows,
        models={"model": {"label": "tiny_acmix", "name": "tiny_acmix", "onnx": None, "engine": None,
                          "input_size": [16, 16], "overrides": {}},
                "baseline": {"label": "tiny_plain", "name": "tiny_plain", "onnx": None, "engine": None,
                             "input_size": [16, 16], "overrides": {}}},
        machine=machine_info(), interleaved=True, ort_spinning=False, created="2026-01-01T00:00:00Z",
        notes=["model and baseline timed interleaved"],
    )  # fmt: skip
