"""Odd input sizes at the ONNX level, with the card's default k_att = 7 and reflected halos: the export
verifies itself, and ONNX Runtime on fresh images matches the PyTorch reference under the tolerance
rule (parity.compare: max |diff| <= 1e-4 x max |ref|, decisive top-1 equal)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from acmix_deploy.export import export_onnx, reference_and_deploy
from acmix_deploy.nn.acmix import acmix_blocks
from acmix_deploy.nn.deploy import ACmixDeploy
from acmix_deploy.runners import OnnxRuntimeRunner, RunnerOptions
from acmix_deploy.parity import compare

# k_att stays the card's 7; one block per stage keeps each export short (the exporter's cost is per block).
ODD = {"width": 16, "layers": [1, 1, 1, 1], "num_classes": 10}


@pytest.fixture(scope="module")
def odd_exports(tmp_path_factory) -> dict[int, object]:
    folder = tmp_path_factory.mktemp("odd")
    return {size: export_onnx("resnet_acmix26", img_size=size, overrides=ODD, optimize=False,
                              output=folder / f"r26_{size}.onnx") for size in (75, 101)}


@pytest.mark.parametrize("size", [75, 101])
def test_odd_sizes_with_k_att_7_match_torch_in_onnx_runtime(size, odd_exports):
    result = odd_exports[size]
    assert result.verified and all(line.startswith("PASSED") for line in result.parity)
    model = onnx.load(str(result.path))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, size, size]

    reference, deploy, _ = reference_and_deploy("resnet_acmix26", build={"img_size": size, **ODD})
    blocks = [m for m in deploy.modules() if isinstance(m, ACmixDeploy)]
    assert blocks and {b.kernel_att for _, b in acmix_blocks(reference)} == {7}
    # odd maps all the way down (ACmix inputs 75: 19, 19, 10, 5; 101: 26, 26, 13, 7): reflected 4 x 4
    # halos on the larger maps, one or two clipped blocks on the smaller ones
    assert reference.block_input_sizes(size) == {75: [19, 19, 10, 5], 101: [26, 26, 13, 7]}[size]
    assert {b.attention.mode for b in blocks} == {"reflect", "unique"}

    x = torch.from_numpy(np.random.default_rng(size).standard_normal((1, 3, size, size)).astype(np.float32))
    with torch.no_grad():
        want = reference.eval()(x).numpy()
    with OnnxRuntimeRunner(result.path, options=RunnerOptions(threads=1)) as runner:
        got = runner.infer(x.numpy())["logits"]
    parity = compare(want, got, name="logits")
    assert parity.passed, parity.line()
    assert parity.max_abs <= 1e-4 * parity.ref_scale and parity.cosine > 0.9999
