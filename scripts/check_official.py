#!/usr/bin/env python3
"""Check checkpoint compatibility with the official ACmix code (GitHub LeapLabTHU/ACmix).

Builds the official ResNet-ACmix-50 and Swin-ACmix-T with a fixed seed (random weights), saves their
state dicts, loads them into ours with strict=True through the toolkit's safe loader, and compares
eval-mode outputs in fp32 (max abs difference <= 1e-5).

    python scripts/check_official.py --official-repo /path/to/ACmix

The official files import two things this check does not need: torchvision.models.utils (gone from
current torchvision, unused) and timm's DropPath / to_2tuple / trunc_normal_. When those packages are
missing, minimal stand-ins are installed in sys.modules for the duration of the import.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import types
from pathlib import Path

import torch
import torch.nn as nn

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from acmix_deploy.checkpoint import read_checkpoint  # noqa: E402
from acmix_deploy.registry import create_model  # noqa: E402

TOL = 1e-5


class _DropPath(nn.Module):
    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        return x  # only used in eval mode here


def _install_stand_ins() -> None:
    try:
        import torchvision.models.utils  # noqa: F401
    except Exception:
        tv = sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
        models = sys.modules.setdefault("torchvision.models", types.ModuleType("torchvision.models"))
        utils = types.ModuleType("torchvision.models.utils")
        utils.load_state_dict_from_url = None
        sys.modules["torchvision.models.utils"] = utils
        tv.models, models.utils = models, utils
    try:
        from timm.models.layers import DropPath, to_2tuple, trunc_normal_  # noqa: F401
    except Exception:
        layers = types.ModuleType("timm.models.layers")
        layers.DropPath = _DropPath
        layers.to_2tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
        layers.trunc_normal_ = lambda t, mean=0.0, std=1.0, a=-2.0, b=2.0: nn.init.trunc_normal_(t, mean, std, a, b)
        timm = sys.modules.setdefault("timm", types.ModuleType("timm"))
        tmodels = sys.modules.setdefault("timm.models", types.ModuleType("timm.models"))
        sys.modules["timm.models.layers"] = layers
        timm.models, tmodels.layers = tmodels, layers


def _import(path: Path, name: str):
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(path.parent))


def official_models(repo: Path) -> dict[str, tuple[nn.Module, int]]:
    """(official model, input size) keyed by our registry name."""
    _install_stand_ins()
    resnet = _import(repo / "ResNet" / "ResNet_ImageNet.py", "official_resnet_acmix")
    swin = _import(repo / "Swin-Transformer" / "models" / "swin_transformer_acmix.py", "official_swin_acmix")
    torch.manual_seed(0)
    r50 = resnet.ACmix_ResNet(layers=[3, 4, 6, 3])
    torch.manual_seed(0)
    swin_t = swin.SwinTransformer_acmix(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7)
    return {"resnet_acmix50": (r50, 224), "swin_acmix_t": (swin_t, 224)}


def _randomise_rates_and_bn(model: nn.Module, seed: int) -> None:
    """Random BN statistics and rates, so the comparison exercises every tensor of the state dict."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("rate1") or name.endswith("rate2"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.25)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def check(repo: Path, names: list[str] | None = None, batch: int = 2) -> list[tuple[str, float, bool]]:
    results = []
    for name, (official, size) in official_models(repo).items():
        if names and name not in names:
            continue
        _randomise_rates_and_bn(official, 1)
        official.eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.pth"
            torch.save(official.state_dict(), path)
            ours = create_model(name, checkpoint=path, strict=True)
            assert read_checkpoint(path).state_dict.keys() == official.state_dict().keys()
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            ref, got = official(x), ours(x)
        diff = float((ref - got).abs().max())
        results.append((name, diff, diff <= TOL))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--official-repo", required=True, type=Path, help="checkout of LeapLabTHU/ACmix")
    parser.add_argument("--model", action="append", help="only these registry names")
    args = parser.parse_args()
    if not (args.official_repo / "ResNet" / "test_bottleneck.py").is_file():
        print(f"error: {args.official_repo} is not a checkout of the official ACmix code", file=sys.stderr)
        return 2
    ok = True
    for name, diff, passed in check(args.official_repo, args.model):
        print(f"{'PASSED' if passed else 'FAILED'} {name}: strict load OK, max |official - ours| = {diff:.3e} (limit {TOL:g})")
        ok &= passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
