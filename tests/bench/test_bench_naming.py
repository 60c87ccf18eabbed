import pytest

from acmix_deploy.bench.naming import ATTENTION, CONV, REST, STAGE1, classify, find_blocks
from acmix_deploy.onnx_names import engine_layer_node, resolve_node
from acmix_deploy.onnx_names import module_path as node_module_path


@pytest.mark.parametrize(
    "name, path",
    [
        ("layer1.0.conv2.conv1/Conv_0", "layer1.0.conv2.conv1"),
        ("/layer1/layer1.0/conv2/conv1/Conv", "layer1.0.conv2.conv1"),
        ("/layer1/layer1.0/downsample/downsample.0/Conv", "layer1.0.downsample.0"),
        ("layers.2.blocks.1.attn.qkv/MatMul_12", "layers.2.blocks.1.attn.qkv"),
        ("/layers/layers.2/blocks/blocks.1/attn/Softmax_3", "layers.2.blocks.1.attn"),
        # ONNX Runtime rewrites
        ("/layer1/layer1.0/relu/Relu_output_0_nchwc", "layer1.0.relu"),
        ("/layer1/layer1.0/conv2/attention/MatMul/MatmulTransposeFusion/", "layer1.0.conv2.attention"),
        ("layer1.0.conv2.attention/MatMul_38/MatmulTransposeFusion/", "layer1.0.conv2.attention"),
        # root-level nodes
        ("Conv_0", ""),
        ("/Flatten", ""),
        ("ReorderOutput_token_61", ""),
        ("fc/Gemm_99", "fc"),
    ],
)
def test_node_module_path(name, path):
    assert node_module_path(name) == path


RESNET_PATHS = [
    "conv1", "layer1.0.conv1", "layer1.0.conv2.conv1", "layer1.0.conv2.conv2", "layer1.0.conv2.conv3",
    "layer1.0.conv2.attention", "layer1.0.conv2.fc", "layer1.0.conv2.dep_conv", "layer1.0.conv2",
    "layer1.0.conv3", "layer1.0.downsample.0", "layer3.2.conv2.qkv", "layer3.2.conv2.dep_conv", "fc",
]  # fmt: skip


def test_blocks_are_modules_with_acmix_only_children():
    assert find_blocks(RESNET_PATHS) == ["layer1.0.conv2", "layer3.2.conv2"]
    swin = ["layers.2.blocks.1.attn.qkv", "layers.2.blocks.1.attn.dep_conv", "layers.2.blocks.1.mlp.fc1"]
    assert find_blocks(swin) == ["layers.2.blocks.1.attn"]
    # deploy forms nest the conv path: the block is still the ACmix module
    deploy = ["layer3.2.conv2.conv1", "layer3.2.conv2.conv_path.fc", "layer3.2.conv2.conv_path.dep_conv",
              "layer3.2.conv2.attention"]  # fmt: skip
    assert find_blocks(deploy) == ["layer3.2.conv2"]
    assert classify("layer3.2.conv2.conv_path.dep_conv", find_blocks(deploy)) == ("layer3.2.conv2", CONV)
    # a plain ResNet (conv1 + fc at the root) and a plain Swin have no ACmix block
    assert find_blocks(["conv1", "layer1.0.conv1", "layer1.0.conv2", "fc"]) == []
    assert find_blocks(["layers.0.blocks.0.attn.qkv", "layers.0.blocks.0.attn.proj"]) == []


@pytest.mark.parametrize(
    "path, expected",
    [
        ("layer1.0.conv2.conv1", ("layer1.0.conv2", STAGE1)),
        ("layer1.0.conv2.conv3", ("layer1.0.conv2", STAGE1)),
        ("layer3.2.conv2.qkv", ("layer3.2.conv2", STAGE1)),
        ("layer1.0.conv2.attention", ("layer1.0.conv2", ATTENTION)),
        ("layer1.0.conv2.attention.softmax", ("layer1.0.conv2", ATTENTION)),
        ("layer1.0.conv2.conv_p", ("layer1.0.conv2", ATTENTION)),
        ("layer1.0.conv2.fc", ("layer1.0.conv2", CONV)),
        ("layer1.0.conv2.dep_conv", ("layer1.0.conv2", CONV)),
        ("layer1.0.conv2", ("layer1.0.conv2", REST)),  # rate mixing etc. inside the block
        ("layer1.0.conv3", (None, REST)),  # the bottleneck's own conv3 is outside the block
        ("layer1.0.conv1", (None, REST)),
        ("fc", (None, REST)),
        ("", (None, REST)),
        ("layer1.0.conv2x.conv1", (None, REST)),  # prefix match is per component
    ],
)
def test_classify_resnet(path, expected):
    assert classify(path, ["layer1.0.conv2", "layer3.2.conv2"]) == expected


def test_classify_swin_and_nested_blocks():
    blocks = ["layers.2.blocks.1.attn"]
    assert classify("layers.2.blocks.1.attn.qkv", blocks) == ("layers.2.blocks.1.attn", STAGE1)
    assert classify("layers.2.blocks.1.attn.conv_path.fc", blocks) == ("layers.2.blocks.1.attn", CONV)
    assert classify("layers.2.blocks.1.attn.proj", blocks) == ("layers.2.blocks.1.attn", REST)
    assert classify("layers.2.blocks.1.mlp.fc1", blocks) == (None, REST)
    # the longest block prefix wins
    assert classify("a.b.attention", ["a", "a.b"]) == ("a.b", ATTENTION)


def test_engine_layer_names():
    assert engine_layer_node("layer1.0.conv2.conv1/Conv_0 + layer1.0.relu/Relu_3") == "layer1.0.conv2.conv1/Conv_0"
    assert engine_layer_node("{ForeignNode[layer1.0.conv2.attention/MatMul_7...layer1.0.conv2/Add_9]}") == (
        "layer1.0.conv2.attention/MatMul_7"
    )
    assert engine_layer_node("Reformatting CopyNode for Input Tensor 0 to x") == (
        "Reformatting CopyNode for Input Tensor 0 to x"
    )


def test_resolve_node_undoes_runtime_renames():
    names = {"/layer1/layer1.0/conv1/Conv", "a.b/MatMul_3"}
    producers = {"/layer1/layer1.0/conv1/Conv_output_0": "/layer1/layer1.0/conv1/Conv", "conv2d_5": "x.y/Conv_5"}
    assert resolve_node("/layer1/layer1.0/conv1/Conv", names, producers) == "/layer1/layer1.0/conv1/Conv"
    assert resolve_node("/layer1/layer1.0/conv1/Conv_output_0_nchwc", names, producers) == "/layer1/layer1.0/conv1/Conv"
    assert resolve_node("conv2d_5_nchwc", names, producers) == "x.y/Conv_5"
    assert resolve_node("a.b/MatMul_3/MatmulTransposeFusion/", names, producers) == "a.b/MatMul_3"
    assert resolve_node("Unknown_7", names, producers) == "Unknown_7"
