"""SAN-ACmix exports: block parts carry their module paths, the profile classifier finds them, no
Unfold / Im2Col / Col2Im / Pad / float64, stage outputs for a neck."""

from __future__ import annotations

import onnx

from acmix_deploy.bench.naming import ATTENTION, CONV, REST, STAGE1, classify, find_blocks
from acmix_deploy.onnx_names import module_path
from acmix_deploy.archs.san_parts import AGGREGATION, WEIGHT_NET
from acmix_deploy.bench.profile import profile_onnxruntime


def test_san_acmix_export_parts_and_ops(small_export):
    result = small_export("san_acmix10")  # features export: stages 1-4 (strides 4-32)
    model = onnx.load(str(result.path))
    assert [o.name for o in model.graph.output] == ["stage1", "stage2", "stage3", "stage4"]
    channels = [o.type.tensor_type.shape.dim[1].dim_value for o in model.graph.output]
    sides = [o.type.tensor_type.shape.dim[3].dim_value for o in model.graph.output]
    assert channels == [128, 256, 512, 1024] and sides == [16, 8, 4, 2]
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"Col2Im", "Im2Col", "Unfold", "Pad", "Loop", "NonZero"}
    paths = [module_path(n.name) for n in model.graph.node]
    blocks = find_blocks(paths)
    assert blocks == [f"layer{i}.0.sam" for i in range(5)]
    found = {}
    for path in paths:
        block, category = classify(path, blocks)
        if block:
            found.setdefault(block, set()).add(category)
    assert all(cats >= {STAGE1, WEIGHT_NET, AGGREGATION, CONV} and ATTENTION not in cats for cats in found.values())
    # a bounded number of gathers per SAM: one padded map for the keys, one for the values
    for block in blocks:
        assert sum(n.op_type == "Gather" for n in model.graph.node if n.name.startswith(block + ".")) <= 2


def test_profile_splits_san_blocks_into_parts(small_export):
    path = small_export("san_acmix10").path
    r = profile_onnxruntime(path, 1, (64, 64), warmup=1, iterations=2, threads=1)
    assert r.status == "ok" and [b["block"] for b in r.blocks()] == [f"layer{i}.0.sam" for i in range(5)]
    totals = r.totals()
    assert list(totals) == [STAGE1, ATTENTION, CONV, WEIGHT_NET, AGGREGATION, REST]
    assert all(totals[c] > 0 for c in (STAGE1, CONV, WEIGHT_NET, AGGREGATION)) and totals[ATTENTION] == 0
