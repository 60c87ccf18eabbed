"""CLI wiring of `train` and `data digits`: one-line errors, exit codes, printed counts."""

from __future__ import annotations

from tests.conftest import run_cli


def test_train_needs_model_and_data(tmp_path):
    code, _, err = run_cli("train", "--data", str(tmp_path))
    assert code == 2 and err.strip() == "error: train needs --model and --data (or --resume RUN/last.pth to continue a run)"
    code, _, err = run_cli("train", "--model", "resnet_acmix26", "--data", str(tmp_path / "none"), "-o", str(tmp_path / "r"))
    assert code == 2 and "does not exist" in err and err.count("\n") == 1
    code, _, err = run_cli("train", "--model", "resnet_acmix26", "--data", str(tmp_path), "--opt", "lamb")
    assert code == 2 and "unknown optimizer 'lamb'" in err


def test_train_refuses_too_small_inputs(small_digits, tmp_path):
    code, _, err = run_cli("train", "--model", "resnet_acmix26", "--data", str(small_digits), "--img-size", "32",
                           "-o", str(tmp_path / "r"), "--no-progress")
    assert code == 2 and "below the minimum of 49 px" in err
    assert not (tmp_path / "r").exists()


def test_data_digits_prints_split(tmp_path):
    code, out, _ = run_cli("data", "digits", str(tmp_path / "d"), "--size", "8", "--npy", str(tmp_path / "c.npy"))
    assert code == 0
    assert "1437 train / 360 val images" in out and "val   per class: 0:36 1:36 2:35 3:37" in out
    assert "uint8 (1437, 8, 8, 3)" in out
    code, _, err = run_cli("data", "digits", str(tmp_path / "d"))
    assert code == 2 and "pass --force" in err
