"""`torchrun --nproc_per_node 2 -m acmix_deploy.cli train ...`: two CPU processes over gloo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from acmix_deploy.checkpoint import read_checkpoint
from acmix_deploy.train.report import read_metrics_csv

from .conftest import TINY_SIZE

ROOT = Path(__file__).resolve().parents[2]


def _single_process_val_loss(checkpoint: Path, val_root: Path) -> float:
    """Mean cross-entropy of the checkpoint over every val image, in this one process."""
    import torch
    import torch.nn.functional as F

    from acmix_deploy.registry import create_model
    from acmix_deploy.preprocess import Preprocessing
    from acmix_deploy.train.data import EvalOnly, ImageFolder

    model = create_model(None, checkpoint=checkpoint).eval()
    ds = ImageFolder(val_root, EvalOnly(Preprocessing.from_card(model.card)))
    items = [ds[i] for i in range(len(ds))]
    x = torch.from_numpy(np.stack([it[0] for it in items]))
    y = torch.tensor([it[1] for it in items])
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y))


def test_two_process_gloo_run(small_digits, tmp_path):
    data = small_digits
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "acmix_deploy.cli", "train", "--model", "resnet_acmix26", "--data", str(data),
        "--width", "8", "--k-att", "3", "--img-size", str(TINY_SIZE), "--epochs", "2", "--batch-size", "16",
        "--workers", "0", "--threads", "1", "--no-progress", "-o", str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # own session, so a hang kills torchrun's workers too
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    # only rank 0 prints and writes
    assert stdout.count("training resnet_acmix26") == 1
    assert "cpu x 2 processes" in stdout
    assert "fast ACmix form" in stdout  # the default training form of the blocks runs under DDP too
    assert sorted(p.name for p in out.iterdir()) == ["best.pth", "curves.png", "last.pth", "metrics.csv"]
    assert len(read_metrics_csv(out / "metrics.csv")) == 2
    last = read_checkpoint(out / "last.pth")
    state = last.meta["train"]
    # 80 images / 2 processes / 8 per process = 5 steps per epoch; every val image counted once
    assert state["steps_per_epoch"] == 5 and state["schedule"]["step_count"] == 10
    assert len(state["rng"]) == 2 and last.meta["dataset"]["val_images"] == 30
    assert last.meta["form"] == "fast" and state["config"]["form"] == "fast"
    assert all(k.split(".")[0] != "module" for k in last.state_dict)
    # rank 0's weights and buffers, evaluated here over all 30 images, give the loss both ranks
    # reported together: fails if the ranks trained apart (no DDP, no buffer sync) or a shard is lost
    val_loss = read_metrics_csv(out / "metrics.csv")[-1]["val_loss"]
    assert abs(_single_process_val_loss(out / "last.pth", data / "val") - val_loss) <= 2e-5 * abs(val_loss)
