"""Training: the loss goes down, files are complete, resume continues bit-exactly, odd inputs."""

from __future__ import annotations

import io
import shutil

import pytest
import torch
from rich.console import Console

from acmix_deploy.checkpoint import read_checkpoint
from acmix_deploy.errors import AcmixError
from acmix_deploy.train import loop
from acmix_deploy.train.data import collate
from acmix_deploy.train.loop import prepare, train
from acmix_deploy.train.report import COLUMNS, read_metrics_csv

from .conftest import tiny_options


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200), buf


def test_short_training_reduces_the_loss(trained_run):
    out, result = trained_run
    hist = result.history
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    # 3 epochs of a 0.16M-parameter ResNet-ACmix on 1,437 digits: clearly learning (chance: 10%, loss 2.30)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] - 0.5
    first, last = result.step_losses[:10], result.step_losses[-10:]
    assert sum(last) / 10 < 0.7 * sum(first) / 10
    assert hist[-1]["val_top1"] >= 60.0 and hist[-1]["val_top5"] >= 90.0
    assert result.best_top1 == max(r["val_top1"] for r in hist)

    rows = read_metrics_csv(out / "metrics.csv")
    assert len(rows) == 3 and tuple(rows[0]) == COLUMNS
    assert rows[-1]["val_top1"] == pytest.approx(hist[-1]["val_top1"], rel=1e-5)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left

    best = read_checkpoint(out / "best.pth")
    assert best.meta["classes"] == [str(d) for d in range(10)]
    assert best.meta["preprocessing"]["input_size"] == 20
    assert best.meta["metrics"]["val_top1"] == result.best_top1
    assert "train" not in best.meta  # weights + metrics only
    last = read_checkpoint(out / "last.pth")
    assert last.meta["train"]["epoch"] == 3 and last.meta["train"]["schedule"]["step_count"] == 3 * 44


def test_refuses_to_overwrite_a_run_and_to_resume_best(trained_run, digits_dir):
    out, _ = trained_run
    config, _ = prepare(tiny_options(digits_dir, out))
    with pytest.raises(AcmixError, match="already holds a run"):
        train(config, show_progress=False)
    with pytest.raises(AcmixError, match="no training state"):
        prepare({}, resume=out / "best.pth")


def _swin_options(data, out, **extra):
    # tiny Swin-ACmix with stochastic depth: the model itself draws random numbers, so an exact
    # resume needs the saved RNG states (as well as optimizer, schedule and data order)
    opts = tiny_options(data, out, model="swin_acmix_t", img_size=32, batch_size=16, epochs=3, opt="adamw",
                        hflip=True, threads=1)
    opts["overrides"] = {"width": 12, "heads": 1, "window": 2, "depths": [1, 1, 1, 1], "drop_path_rate": 0.2}
    opts.update(extra)
    return opts


def test_resume_continues_exactly(small_digits, tmp_path):
    console, _ = _console()
    full_cfg, _ = prepare(_swin_options(small_digits, tmp_path / "full"))
    full = train(full_cfg, console=console, show_progress=False)

    part_cfg, _ = prepare(_swin_options(small_digits, tmp_path / "part", workers=1))
    part = train(part_cfg, console=console, show_progress=False, stop_after=1)
    assert part.epochs_done == 1 and len(part.step_losses) == 5
    cfg, state = prepare({"workers": 0}, resume=tmp_path / "part" / "last.pth")
    rest = train(cfg, state, console=console, show_progress=False)

    assert rest.epochs_done == 3
    assert part.step_losses + rest.step_losses == full.step_losses  # every step, bit for bit
    a = read_checkpoint(tmp_path / "full" / "last.pth").state_dict
    b = read_checkpoint(tmp_path / "part" / "last.pth").state_dict
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert strip(rest.history) == strip(full.history)
    assert len(read_metrics_csv(tmp_path / "part" / "metrics.csv")) == 3


def test_corrupt_train_image_is_replaced_and_amp_ignored_on_cpu(small_digits, tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(small_digits, data)
    bad = data / "train" / "4" / "zz_broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    dropped = []  # items collate receives without an image: none when the broken file is substituted

    def counting_collate(items):
        dropped.append(sum(it[0] is None for it in items))
        return collate(items)

    monkeypatch.setattr(loop, "collate", counting_collate)
    console, buf = _console()
    cfg, _ = prepare(tiny_options(data, tmp_path / "run", epochs=1, amp=True, threads=1))
    result = train(cfg, console=console, show_progress=False)
    text = buf.getvalue()
    if not torch.cuda.is_available():
        assert "--amp needs a CUDA GPU" in text
    assert result.corrupt_train == [str(bad)]
    assert "1 corrupt training image(s)" in text and "zz_broken.png" in text
    assert result.train_images == 81 and len(result.step_losses) == 81 // 16
    assert dropped and sum(dropped) == 0


def test_class_folders_must_match(small_digits, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_digits, data)
    shutil.rmtree(data / "val" / "9")
    cfg, _ = prepare(tiny_options(data, tmp_path / "run"))
    with pytest.raises(AcmixError, match="class folders must match"):
        train(cfg, show_progress=False)
    cfg, _ = prepare(tiny_options(small_digits, tmp_path / "run2", overrides={"width": 8, "k_att": 3, "num_classes": 12}))
    with pytest.raises(AcmixError, match="--num-classes 12"):
        train(cfg, show_progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_amp_on_gpu(small_digits, tmp_path):
    cfg, _ = prepare(tiny_options(small_digits, tmp_path / "run", epochs=2, amp=True))
    result = train(cfg, show_progress=False)
    assert all(torch.isfinite(torch.tensor(result.step_losses)))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
