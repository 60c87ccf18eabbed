"""Every family's registered stage-I structure (registry.family(arch).structure) holds in the real small
exports of its ACmix models (the session fixture's files: no extra export)."""

from __future__ import annotations

from collections import Counter

import onnx
import pytest

from acmix_deploy.bench import naming
from acmix_deploy.onnx_names import module_path
from acmix_deploy.registry import family, get_card, list_families, list_models
from tests.export.conftest import EXPORT_OPTIONS


def stage1_op_counts(model: onnx.ModelProto) -> dict[str, Counter]:
    """ACmix block path -> op-type counts of the nodes the profile's classifier files under its stage I."""
    paths = [module_path(node.name) for node in model.graph.node]
    blocks = naming.find_blocks(paths)
    counts: dict[str, Counter] = {block: Counter() for block in blocks}
    for node, path in zip(model.graph.node, paths):
        block, category = naming.classify(path, blocks)
        if category == naming.STAGE1:
            counts[block][node.op_type] += 1
    return counts


def _checked_models() -> list[str]:
    """ACmix models whose session export the structure speaks of (optimized where it needs the passes)."""
    out = []
    for name in list_models():
        card = get_card(name)
        structure = family(card.arch).structure
        if card.is_acmix and (not structure.optimized or EXPORT_OPTIONS[name].get("optimize")):
            out.append(name)
    return out


def test_every_family_registers_a_structure_checked_here():
    assert {get_card(n).arch for n in _checked_models()} == set(list_families()) == {"pvt", "resnet", "san", "swin"}


@pytest.mark.parametrize("name", _checked_models())
def test_export_matches_family_structure(name, small_export):
    structure = family(get_card(name).arch).structure
    counts = stage1_op_counts(onnx.load(str(small_export(name).path)))
    assert counts, "no ACmix block found in the export's node names"
    wrong = {block: dict(c) for block, c in counts.items() if not structure.matches(c)}
    assert not wrong, f"{structure.note}; but: {wrong}"
    if name == "resnet_acmix26":  # one Conv + Split per block, 8 blocks at the small overrides
        assert sum(c["Conv"] for c in counts.values()) == sum(c["Split"] for c in counts.values()) == len(counts) == 8
