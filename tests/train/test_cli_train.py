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


def test_train_cli_warnings_go_to_stderr(small_digits, tmp_path):
    """One epoch of a tiny model with --amp on a CPU: the warning on stderr, the epoch line on stdout;
    the old `--out` still names the run folder (a hidden alias for one release)."""
    import torch

    from tests.train.conftest import TINY, TINY_SIZE

    if torch.cuda.is_available():
        pytest.skip("--amp is not ignored on a CUDA machine")
    overrides = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items() if k in ("width", "k_att")]
    code, out, err = run_cli("train", "--model", "resnet_acmix26", "--data", str(small_digits), "--img-size",
                             str(TINY_SIZE), *overrides, "--epochs", "1", "--batch-size", "16", "--workers", "0",
                             "--threads", "1", "--amp", "--no-progress", "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert err.startswith("warning: --amp needs a CUDA GPU") and "warning:" not in out
    assert "epoch   1/1" in out and (tmp_path / "r" / "last.pth").exists()
