"""TensorRT acceptance: exported ACmix graphs parse and compile in TensorRT-RTX (ahead of time, no GPU).

TensorRT-RTX builds engines on a machine without a GPU; only loading and running one needs it. No
timing cache is set: in TensorRT-RTX asking for one queries the GPU.
"""

from __future__ import annotations

import pytest

trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed (pip install tensorrt-rtx-cu12)")


def build_engine(onnx_path) -> tuple[bytes | None, list[str], int]:
    """Parse an ONNX file and build a serialized engine: (engine bytes or None, parser errors, layers)."""
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT < 10 only
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        return None, [str(parser.get_error(i)) for i in range(parser.num_errors)], network.num_layers
    config = builder.create_builder_config()
    if network.get_input(0).shape[0] == -1:  # dynamic batch: one optimisation profile
        shape = tuple(network.get_input(0).shape)[1:]
        profile = builder.create_optimization_profile()
        profile.set_shape(network.get_input(0).name, (1, *shape), (2, *shape), (8, *shape))
        config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    return (bytes(engine) if engine is not None else None), [], network.num_layers


@pytest.mark.parametrize("name", ["resnet_acmix26", "swin_acmix_t"])
def test_tensorrt_rtx_parses_and_compiles(name, small_export):
    """resnet_acmix26 (dynamic batch, graph passes applied) and swin_acmix_t (fixed batch)."""
    path = small_export(name).path
    engine, errors, layers = build_engine(path)
    assert not errors, errors
    assert layers > 50
    assert engine is not None and len(engine) > 100_000
