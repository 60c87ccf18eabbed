"""Shared test helpers: small model overrides that keep every registered model fast on 2 CPU cores."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

# Overrides that shrink each family while keeping every code path (stride 2, shifted windows, ...).
SMALL = {
    "resnet": dict(width=16, k_att=3, img_size=64, num_classes=10),
    "swin": dict(width=32, heads=2, window=4, img_size=64, num_classes=10),
    # head_dim 8; stages 1-2 take the folded-fc deploy path, 3-4 the unfolded one
    "pvt": dict(embed_dims=[8, 16, 40, 64], heads=[1, 2, 5, 8], depths=[1, 1, 1, 1], img_size=64, num_classes=10),
    "san": dict(width=32, kernels=[3, 3, 3, 3, 3], layers=[1, 1, 1, 1, 1], img_size=64, num_classes=10),
}


def small_overrides(name: str) -> dict:
    from acmix_deploy.registry import get_card

    return dict(SMALL[get_card(name).arch])


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    return torch.Generator().manual_seed(0)
