"""Property tests (hypothesis, derandomized, bounded): the halo geometry against a brute-force
reflected window, the minimum-size rule, the deploy ACmix block against the reference block, and the
CLI's option parsers. The SAN / PVT / training-form properties live beside their blocks
(tests/test_san.py, tests/test_pvt.py, tests/test_acmix_train.py)."""

from __future__ import annotations

import functools
import json
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from acmix_deploy.cli._options import int_list, split_list
from acmix_deploy.cli.export_cmd import _parse_overrides
from acmix_deploy.cli.optimize_cmd import _parse_shapes
from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.acmix import ACmix, out_size
from acmix_deploy.nn.deploy import ACmixDeploy
from acmix_deploy.nn.local_attention import HALO_MODES, halo_geometry
from acmix_deploy.registry import create_model
from acmix_deploy.trt.build import parse_size
from tests.export.test_deploy_forms import assert_same, randomize

# Bounded and reproducible: the same examples on every run, no per-example deadline on a loaded CI.
BOUNDED = settings(max_examples=30, deadline=None, derandomize=True)
HEAVY = settings(max_examples=12, deadline=None, derandomize=True)


def _reflect(i: int, n: int) -> int:
    return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)


@BOUNDED
@given(k=st.sampled_from([3, 5, 7]), stride=st.sampled_from([1, 2]), block=st.integers(1, 6),
       mode=st.sampled_from(sorted(HALO_MODES)), data=st.data())
def test_halo_geometry_holds_exactly_each_reflected_window(k, stride, block, mode, data):
    """For every output pixel: its query sits at (oy * s, ox * s) and its halo keys, counted with the
    mask's multiplicities, are exactly the k x k reflection-padded window (no key more, none less)."""
    pad = (k - 1) // 2
    h = data.draw(st.integers(pad + 1, 23), label="height")
    w = data.draw(st.integers(pad + 1, 23), label="width")
    g = halo_geometry(h, w, k, stride, block, mode)
    ho, wo = out_size(h, stride), out_size(w, stride)
    assert (g.out_height, g.out_width) == (ho, wo) and len(g.output_index) == ho * wo
    assert len(set(g.output_index.tolist())) == ho * wo  # one blocked row per output pixel
    counts = np.rint(np.exp(np.broadcast_to(g.mask, (g.n_blocks, block * block, g.halo_size)))).astype(int)
    keys = g.key_index.reshape(g.n_blocks, g.halo_size)
    for i, row in enumerate(g.output_index.tolist()):
        oy, ox = divmod(i, wo)
        assert g.query_index[row] == oy * stride * w + ox * stride
        blk, slot = divmod(row, block * block)
        got: Counter[int] = Counter()
        for key, n in zip(keys[blk].tolist(), counts[blk, slot].tolist()):
            got[key] += n
        want = Counter(_reflect(oy * stride + dy - pad, h) * w + _reflect(ox * stride + dx - pad, w)
                       for dy in range(k) for dx in range(k))
        assert +got == want, (oy, ox)


@BOUNDED
@given(k=st.sampled_from([3, 5, 7]), h=st.integers(1, 12), w=st.integers(1, 12))
def test_minimum_size_rule_of_the_block(k, h, w):
    """A map is accepted iff both sides exceed the reflection padding: the reference block's check,
    the halo geometry and min_input all draw the line at the same place."""
    block = ACmix(4, 4, k_att=k, head=2)
    pad = (k - 1) // 2
    assert block.min_input == pad + 1
    fits = min(h, w) > pad
    if fits:
        block.check_size(h, w)
        assert halo_geometry(h, w, k, 1, 2).out_height == h
    else:
        with pytest.raises(AcmixError, match=f"smaller than {pad + 1} px"):
            block.check_size(h, w)
        with pytest.raises(AcmixError, match="too small"):
            halo_geometry(h, w, k, 1, 2)


@functools.cache
def _resnet_acmix26(k: int) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model("resnet_acmix26", k_att=k, width=8, img_size=256)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(k=st.sampled_from([3, 5, 7]), size=st.integers(8, 120))
def test_minimum_size_rule_of_resnet_acmix(k, size):
    """create_model refuses exactly the sizes at which some ACmix map would fall below k_att's padding."""
    model = _resnet_acmix26(k)
    smallest = model.min_size
    with torch.device("meta"):
        if min(model.block_input_sizes(size)) > (k - 1) // 2:
            assert size >= smallest
        else:
            assert size < smallest
            with pytest.raises(AcmixError, match=f"below the minimum of {smallest} px"):
                create_model("resnet_acmix26", k_att=k, width=8, img_size=size)


@HEAVY
@given(cin=st.integers(1, 8), heads=st.integers(1, 4), head_dim=st.integers(1, 4), k=st.sampled_from([3, 5, 7]),
       stride=st.sampled_from([1, 2]), data=st.data())
def test_deploy_block_matches_reference_block(cin, heads, head_dim, k, stride, data):
    """The exported form of the ACmix block (blocked halo attention, folded conv path) computes the
    reference block's output over channels, heads, k_att, stride and odd sizes."""
    pad = (k - 1) // 2
    h = data.draw(st.integers(pad + 1, 17), label="height")
    w = data.draw(st.integers(pad + 1, 17), label="width")
    torch.manual_seed(h * 31 + w)
    block = randomize(ACmix(cin, heads * head_dim, k_att=k, head=heads, stride=stride))
    x = torch.randn(2, cin, h, w)
    with torch.no_grad():
        assert_same(block(x), ACmixDeploy(block, h, w).eval()(x))


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=8)


@BOUNDED
@given(groups=st.lists(st.lists(_token, min_size=1, max_size=4), max_size=4))
def test_split_list_flattens_repeated_comma_separated_options(groups):
    """`--backend a,b --backend c` and `--backend a --backend b,c` mean the same list."""
    assert split_list([", ".join(g) + "," for g in groups]) == [t for g in groups for t in g]
    assert split_list(None) == []


@BOUNDED
@given(values=st.lists(st.integers(1, 4096), min_size=1, max_size=8), bad=st.integers(-5, 0))
def test_int_list_keeps_first_occurrences_and_refuses_non_positive(values, bad):
    assert int_list([",".join(map(str, values))], "--batch") == list(dict.fromkeys(values))
    with pytest.raises(AcmixError, match="--batch values must be >= 1"):
        int_list([*map(str, values), str(bad)], "--batch")
    with pytest.raises(AcmixError, match="--batch takes integers"):
        int_list([*map(str, values), "x1"], "--batch")


_key = st.sampled_from(["width", "k_att", "heads", "layers", "depths", "img_size", "num_classes", "window"])
_value = st.one_of(st.integers(-10**6, 10**6), st.lists(st.integers(0, 64), max_size=5), st.booleans())


@BOUNDED
@given(pairs=st.dictionaries(_key, _value, max_size=5), word=st.sampled_from(["group", "tensor", "fixed", "true", "nan"]))
def test_override_parser_reads_json_values_and_keeps_words(pairs, word):
    items = [f"{k}={json.dumps(v)}" for k, v in pairs.items()]
    assert _parse_overrides(items) == pairs
    if word not in ("true", "false", "null"):
        assert _parse_overrides([f"shift={word}"]) == {"shift": word}
    with pytest.raises(AcmixError, match="--override takes KEY=VALUE"):
        _parse_overrides([word])


@BOUNDED
@given(name=st.sampled_from(["images", "x", "input_1"]), dims=st.lists(st.integers(1, 512), min_size=1,
       max_size=5), sep=st.sampled_from(["x", "X", ","]))
def test_input_shape_parser(name, dims, sep):
    assert _parse_shapes([f"{name}={sep.join(map(str, dims))}"]) == {name: tuple(dims)}
    with pytest.raises(AcmixError, match="every dimension must be >= 1"):
        _parse_shapes([f"{name}={'x'.join(map(str, [*dims, 0]))}"])
    with pytest.raises(AcmixError, match="expects NAME=DxDx"):
        _parse_shapes([f"{name}:{dims[0]}"])


_UNIT_BYTES = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "KiB": 2**10, "M": 10**6, "MB": 10**6, "MiB": 2**20,
               "G": 10**9, "GB": 10**9, "GiB": 2**30, "TiB": 2**40}


@BOUNDED
@given(n=st.integers(1, 10**6), unit=st.sampled_from(sorted(_UNIT_BYTES)), space=st.sampled_from(["", " "]))
def test_size_parser(n, unit, space):
    assert parse_size(f"{n}{space}{unit}") == n * _UNIT_BYTES[unit]
    assert parse_size(f"{n}{space}{unit.lower()}") == n * _UNIT_BYTES[unit]
    with pytest.raises(AcmixError, match="must be positive"):
        parse_size(f"0{unit}")
    with pytest.raises(AcmixError, match="bad size"):
        parse_size(f"{n}{unit}x")
