#!/usr/bin/env python3
"""Check checkpoint compatibility with the original PVT v1 code (GitHub whai362/PVT).

Builds the original PVT-T (classification/pvt.py on the main / v2 branches, pvt.py at the top of
branch v1: the same layers and keys) with a fixed seed, perturbs every bias and LayerNorm parameter
(the original initialises them to constants, which would leave those tensors unchecked), saves its
state dict, loads it into our pvt_t with strict=True through the toolkit's safe loader, and compares
eval-mode logits and the tolerance rule of acmix_deploy.parity.

    python scripts/check_official_pvt.py --pvt-repo /path/to/PVT

The original imports timm (DropPath, to_2tuple, trunc_normal_, register_model, _cfg); when timm is
missing, minimal stand-ins are installed in sys.modules for the import (eval mode needs none of them).
"""

from __future__ import annotations

import argparse
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
from acmix_deploy.parity import FP32_TOL, compare  # noqa: E402
from acmix_deploy.registry import create_model  # noqa: E402
from scripts.check_official import _DropPath, _import  # noqa: E402


def _install_timm_stand_ins() -> None:
    try:
        import timm.models.layers  # noqa: F401
        import timm.models.registry  # noqa: F401
        import timm.models.vision_transformer  # noqa: F401
        return
    except Exception:
        pass
    layers = types.ModuleType("timm.models.layers")
    layers.DropPath = _DropPath
    layers.to_2tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    layers.trunc_normal_ = lambda t, mean=0.0, std=1.0, a=-2.0, b=2.0: nn.init.trunc_normal_(t, mean, std, a, b)
    registry = types.ModuleType("timm.models.registry")
    registry.register_model = lambda fn: fn
    vit = types.ModuleType("timm.models.vision_transformer")
    vit._cfg = lambda **kwargs: dict(kwargs)
    timm = sys.modules.setdefault("timm", types.ModuleType("timm"))
    tmodels = sys.modules.setdefault("timm.models", types.ModuleType("timm.models"))
    for name, mod in (("layers", layers), ("registry", registry), ("vision_transformer", vit)):
        sys.modules[f"timm.models.{name}"] = mod
        setattr(tmodels, name, mod)
    timm.models = tmodels


def pvt_source(repo: Path) -> Path | None:
    for candidate in (repo / "classification" / "pvt.py", repo / "pvt.py"):
        if candidate.is_file() and "PyramidVisionTransformer" in candidate.read_text():
            return candidate
    return None


def original_pvt_tiny(repo: Path, seed: int = 0) -> nn.Module:
    _install_timm_stand_ins()
    module = _import(pvt_source(repo), "original_pvt")
    torch.manual_seed(seed)
    model = module.pvt_tiny()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:  # biases and LayerNorm weights: constants at init
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def check(repo: Path, batch: int = 2, size: int = 224):
    original = original_pvt_tiny(repo)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pvt_tiny.pth"
        torch.save(original.state_dict(), path)
        ours = create_model("pvt_t", checkpoint=path, strict=True)
        same_keys = read_checkpoint(path).state_dict.keys() == ours.state_dict().keys()
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref, got = original(x), ours(x)
    return same_keys, compare(ref.numpy(), got.numpy(), FP32_TOL, name="pvt_t logits")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--pvt-repo", required=True, type=Path, help="checkout of whai362/PVT")
    args = parser.parse_args()
    if pvt_source(args.pvt_repo) is None:
        print(f"error: {args.pvt_repo} is not a checkout of whai362/PVT (no classification/pvt.py)", file=sys.stderr)
        return 2
    same_keys, result = check(args.pvt_repo)
    print(f"strict load of the original PVT-T state dict: OK ({'same' if same_keys else 'DIFFERENT'} key set)")
    print(result.line())
    return 0 if (same_keys and result.passed) else 1


if __name__ == "__main__":
    sys.exit(main())
