"""Safe checkpoint loading: layouts, prefixes, pickled configs, mismatches, bad files."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from acmix_deploy.checkpoint import read_checkpoint, save_checkpoint
from acmix_deploy.errors import AcmixError
from acmix_deploy.registry import create_model

SMALL = dict(width=8, k_att=3, img_size=64, num_classes=4)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return create_model("resnet_acmix26", **SMALL)


def _same(a, b) -> bool:
    return all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


@pytest.mark.parametrize("layout", ["bare", "model", "state_dict", "module_prefix"])
def test_official_layouts_load(tmp_path, model, layout):
    state = model.state_dict()
    obj = {
        "bare": state,
        "model": {"model": state, "epoch": 3},
        "state_dict": {"state_dict": state},
        "module_prefix": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
    }[layout]
    torch.save(obj, tmp_path / "w.pth")
    loaded = create_model("resnet_acmix26", checkpoint=tmp_path / "w.pth", **SMALL)
    assert _same(model, loaded)


def test_pickled_yacs_config_is_stubbed_not_run(tmp_path, model, monkeypatch):
    """Official Swin checkpoints pickle a yacs CfgNode next to 'model'; its code must never run."""
    yacs = types.ModuleType("yacs")
    config = types.ModuleType("yacs.config")

    class CfgNode(dict):
        pass

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    config.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, "yacs", yacs)
    monkeypatch.setitem(sys.modules, "yacs.config", config)
    cfg = CfgNode(MODEL=CfgNode(TYPE="swin_acmix"))
    cfg.frozen = True
    torch.save({"model": model.state_dict(), "config": cfg, "epoch": 299}, tmp_path / "ckpt.pth")
    monkeypatch.delitem(sys.modules, "yacs.config")
    monkeypatch.delitem(sys.modules, "yacs")
    loaded = create_model("resnet_acmix26", checkpoint=tmp_path / "ckpt.pth", **SMALL)
    assert _same(model, loaded)


def test_code_in_a_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": {"w": torch.zeros(1)}, "x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(AcmixError, match="refused: loading it would run code .*references print") as info:
        read_checkpoint(tmp_path / "evil.pth")
    assert "weights_only" not in str(info.value)  # torch's "re-run with weights_only=False" is never passed on


def test_truncated_and_foreign_files(tmp_path, model):
    torch.save(model.state_dict(), tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pth").write_text("not a checkpoint")
    for name in ("cut.pth", "text.pth"):
        with pytest.raises(AcmixError, match="not a readable PyTorch checkpoint") as exc:
            read_checkpoint(tmp_path / name)
        assert "\n" not in str(exc.value)
    with pytest.raises(AcmixError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pth")
    torch.save({"epoch": 1}, tmp_path / "nostate.pth")
    with pytest.raises(AcmixError, match="holds no state dict"):
        read_checkpoint(tmp_path / "nostate.pth")


def test_mismatch_lists_keys_and_non_strict_loads_rest(tmp_path, model):
    state = model.state_dict()
    state.pop("layer1.0.conv2.rate1")
    state["extra.weight"] = torch.zeros(3)
    state["fc.weight"] = torch.zeros(7, 7)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(AcmixError) as exc:
        create_model("resnet_acmix26", checkpoint=tmp_path / "bad.pth", **SMALL)
    msg = str(exc.value)
    assert "1 missing, 1 unexpected, 1 wrongly shaped" in msg
    assert "missing: layer1.0.conv2.rate1" in msg and "unexpected: extra.weight" in msg
    assert "wrong shape: fc.weight checkpoint (7, 7)" in msg
    partial = create_model("resnet_acmix26", checkpoint=tmp_path / "bad.pth", strict=False, **SMALL)
    assert partial.load_report.summary() == "1 missing, 1 unexpected, 1 wrongly shaped keys"
    assert torch.equal(partial.state_dict()["layer2.0.conv2.conv1.weight"], model.state_dict()["layer2.0.conv2.conv1.weight"])


def test_our_checkpoints_rebuild_the_model_from_the_file(tmp_path, model):
    save_checkpoint(model, tmp_path / "ours.pth", classes=["a", "b", "c", "d"])
    rebuilt = create_model(checkpoint=tmp_path / "ours.pth")
    assert rebuilt.build_config["name"] == "resnet_acmix26"
    assert rebuilt.card.num_classes == 4 and rebuilt.card.input_size == 64
    assert rebuilt.classes == ["a", "b", "c", "d"]
    assert _same(model, rebuilt)
    meta = read_checkpoint(tmp_path / "ours.pth").meta
    assert meta["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    # loads as plain weights too (official layout under 'model')
    raw = torch.load(tmp_path / "ours.pth", weights_only=True)
    assert set(raw["model"]) == set(model.state_dict())


def test_swin_bias_tables_are_resized_to_another_window(tmp_path):
    """A checkpoint trained with window 2 loads strictly into window 4: each head's 3x3 table of
    relative offsets (row = dy * 3 + dx) is resized bicubically to 7x7; the rest is equal."""
    torch.manual_seed(0)
    small = dict(width=32, heads=2, num_classes=3)
    a = create_model("swin_t", img_size=64, window=2, **small)
    with torch.no_grad():
        for i, (name, p) in enumerate(n for n in a.named_parameters() if n[0].endswith("bias_table")):
            dy, dx = torch.arange(9).div(3, rounding_mode="floor"), torch.arange(9) % 3
            heads = torch.arange(p.shape[1])
            # differs along dy and dx, per head and per block: a transposed or copied grid would show
            p.copy_((dy[:, None] * 3.0 + dx[:, None] * 0.1 * (heads + 1) + 10 * i).to(p.dtype))
    torch.save({"model": a.state_dict()}, tmp_path / "w2.pth")
    b = create_model("swin_t", checkpoint=tmp_path / "w2.pth", img_size=128, window=4, **small)
    report = b.load_report
    assert report.ok and len(report.resized) == sum(len(layer.blocks) for layer in b.layers)
    assert "from window 2 to 4 (bicubic)" in report.resized[0]
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        if name.endswith("bias_table"):
            heads = pa.shape[1]
            assert pa.shape == (9, heads) and pb.shape == (49, heads)
            grid = pa.detach().double().t().reshape(1, heads, 3, 3)  # [head, dy, dx]
            want = torch.nn.functional.interpolate(grid, size=(7, 7), mode="bicubic", align_corners=False)
            assert torch.allclose(pb.detach().double(), want.reshape(heads, 49).t(), atol=1e-5)
            assert torch.allclose(pb[24], pa[4])  # zero offset stays the zero offset
        else:
            assert torch.equal(pa, pb), name
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.isfinite(b(x)).all()


def test_swin_checkpoint_loads_at_another_resolution(tmp_path):
    torch.manual_seed(0)
    # window 2 stays 2 at every stage of both sizes (a clamped window would change the bias table shape)
    small = dict(width=32, heads=2, window=2, num_classes=3)
    a = create_model("swin_acmix_t", img_size=64, **small)
    torch.save({"model": a.state_dict()}, tmp_path / "s.pth")
    b = create_model("swin_acmix_t", checkpoint=tmp_path / "s.pth", img_size=128, **small)
    assert torch.equal(b.state_dict()["head.weight"], a.state_dict()["head.weight"])
    assert b.layers[0].blocks[1].attn_mask.shape[0] == 256 and a.layers[0].blocks[1].attn_mask.shape[0] == 64
