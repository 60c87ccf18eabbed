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
    model = onnx.load(str(small_export(name).path))
    counts = stage1_op_counts(model)
    assert counts, "no ACmix block found in the export's node names"
    wrong = {block: dict(c) for block, c in counts.items() if not structure.matches(c)}
    assert not wrong, f"{structure.note}; but: {wrong}"
    if name == "resnet_acmix26":  # one Conv + Split per block, 8 blocks at the small overrides
        assert sum(c["Conv"] for c in counts.values()) == sum(c["Split"] for c in counts.values()) == len(counts) == 8


def _float64_places(model: onnx.ModelProto) -> list[str]:
    double = onnx.TensorProto.DOUBLE
    typed = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    places = [v.name for v in typed if v.type.tensor_type.elem_type == double]
    places += [t.name for t in model.graph.initializer if t.data_type == double]
    places += [n.name for n in model.graph.node if n.op_type == "Cast"
               and any(a.name == "to" and a.i == double for a in n.attribute)]
    return places


@pytest.mark.parametrize("name", _checked_models())
def test_export_has_no_col2im_float64_or_folded_away_batchnorm(name, small_export):
    """What engines handle badly never reaches a deploy export: no Col2Im / Im2Col, no float64 tensor,
    and (after the graph passes) no BatchNormalization that is a Conv's only consumer (foldable). SAN's
    pre-activation blocks keep theirs: that Conv's output also feeds the residual sum."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(small_export(name).path)))
    ops = Counter(n.op_type for n in model.graph.node)
    assert not {"Col2Im", "Im2Col"} & set(ops), ops
    assert _float64_places(model) == []
    assert ops["Conv"] > 0
    if EXPORT_OPTIONS[name].get("optimize"):
        consumers = Counter(i for n in model.graph.node for i in n.input)
        conv_outputs = {o for n in model.graph.node if n.op_type == "Conv" for o in n.output}
        foldable = [n.name for n in model.graph.node if n.op_type == "BatchNormalization"
                    and n.input[0] in conv_outputs and consumers[n.input[0]] == 1]
        assert foldable == []
