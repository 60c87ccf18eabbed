"""Strict load + exact outputs against the official ACmix code; needs a checkout of it.

Set ACMIX_OFFICIAL_REPO=/path/to/ACmix (GitHub LeapLabTHU/ACmix) to run; skipped otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = os.environ.get("ACMIX_OFFICIAL_REPO")


@pytest.mark.skipif(not REPO, reason="set ACMIX_OFFICIAL_REPO to a checkout of the official ACmix code")
def test_official_state_dicts_load_and_match():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import check_official

    results = check_official.check(Path(REPO))
    assert {name for name, _, _ in results} == {"resnet_acmix50", "swin_acmix_t"}
    for name, diff, passed in results:
        assert passed, f"{name}: max diff {diff}"
