#!/usr/bin/env python3
"""Check checkpoint compatibility of san10 with the original SAN code (GitHub hszhao/SAN).

Builds their patchwise SAN-10 (model/san.py, sa_type 1, layers [2, 1, 2, 4, 1], kernels [3, 7, 7, 7, 7])
with a fixed seed, settles its BatchNorm statistics on seeded images, saves its state dict, loads it
strictly into our san10 through the toolkit's safe loader, and compares eval-mode logits under the
tolerance rule (acmix_deploy.parity, fp32).

    python scripts/check_official_san.py --san-repo /path/to/SAN

Their code imports cupy (lib/sa/functions/utils.py) for CUDA-only kernels, and their aggregation raises
on CPU. A stand-in `cupy` module is installed in sys.modules for the import, and lib.sa.functional's
aggregation is replaced by a restatement of the ReflectionPad2d + Unfold reference their own test
(lib/sa/functions/aggregation_refpad.py, test_aggregation_refpad) compares the kernel with. The
weight network (their conv_w, unfold_j, pad) runs as their code has it.
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

from acmix_deploy.export import settle_batchnorm, verification_images  # noqa: E402
from acmix_deploy.parity import FP32_TOL, compare  # noqa: E402
from acmix_deploy.registry import create_model, get_card  # noqa: E402


def _install_cupy_stand_in() -> None:
    """Enough of cupy for their modules to import (the kernels themselves are never compiled)."""
    if "cupy" in sys.modules:
        return
    cupy = types.ModuleType("cupy")
    cupy.util = types.SimpleNamespace(memoize=lambda **_kw: (lambda fn: fn))
    cupy.cuda = types.SimpleNamespace(compile_with_cache=None)
    sys.modules["cupy"] = cupy


def unfold_aggregation(input, weight, kernel_size=3, stride=1, padding=0, dilation=1, pad_mode=1):
    """Their test's reference of the refpad aggregation: ReflectionPad2d + Unfold, weight channel c mod c_w."""
    if pad_mode != 1:
        raise NotImplementedError("only the reflection-padded aggregation (pad_mode 1) is restated")
    k = kernel_size if isinstance(kernel_size, int) else kernel_size[0]
    n, c_x, h, w = input.shape
    c_w, length = weight.shape[1], weight.shape[-1]
    unfold = nn.Unfold(kernel_size=k, dilation=dilation, padding=0, stride=stride)
    cols = unfold(nn.ReflectionPad2d(_first(padding))(input)).view(n, c_x // c_w, c_w, k * k, length)
    out_h = (h + 2 * _first(padding) - (_first(dilation) * (k - 1) + 1)) // _first(stride) + 1
    return (weight.unsqueeze(1) * cols).sum(-2).view(n, c_x, out_h, length // out_h)


def _first(v) -> int:
    return v if isinstance(v, int) else v[0]


def their_san10(repo: Path) -> nn.Module:
    _install_cupy_stand_in()
    sys.path.insert(0, str(repo))
    try:
        import lib.sa.functional as functional
        from model.san import san
    finally:
        sys.path.remove(str(repo))
    functional.aggregation = unfold_aggregation
    torch.manual_seed(0)
    return san(sa_type=1, layers=(2, 1, 2, 4, 1), kernels=[3, 7, 7, 7, 7], num_classes=1000)


def check(repo: Path, size: int = 224, batch: int = 2):
    theirs = their_san10(repo)
    card = get_card("san10")
    settle_batchnorm(theirs, card, size, n_images=4)
    theirs.eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "san10.pth"
        torch.save(theirs.state_dict(), path)
        ours = create_model("san10", checkpoint=path, strict=True, img_size=size)
    x = torch.from_numpy(verification_images(card, size, batch, seed=2))
    with torch.no_grad():
        ref, got = theirs(x), ours(x)
    return compare(ref.numpy(), got.numpy(), FP32_TOL, name="san10 logits"), len(theirs.state_dict())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--san-repo", required=True, type=Path, help="checkout of hszhao/SAN")
    parser.add_argument("--img-size", type=int, default=224)
    args = parser.parse_args()
    if not (args.san_repo / "model" / "san.py").is_file() or not (args.san_repo / "lib" / "sa").is_dir():
        print(f"error: {args.san_repo} is not a checkout of hszhao/SAN (no model/san.py, lib/sa)", file=sys.stderr)
        return 2
    result, n_keys = check(args.san_repo, args.img_size)
    print(f"strict load of their state dict ({n_keys} keys) into san10: OK")
    print(result.line())
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
