"""bench on a 100-column terminal (a real pseudo-terminal): no cut cell, the shift form in the labels."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def run_on_terminal(args: list[str], cwd: Path, columns: int, timeout: float = 600) -> tuple[int, str]:
    """Run `python -m acmix_deploy.cli ARGS` with stdout and stderr on a pseudo-terminal."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm-256color"}
    proc = subprocess.Popen([sys.executable, "-m", "acmix_deploy.cli", *args], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            proc.kill()
            pytest.fail(f"no output for {timeout} s")
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(), ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))


@pytest.mark.slow
def test_table7_command_fits_100_columns_and_labels_the_shift(tmp_path):
    code, out = run_on_terminal(
        ["bench", "--model", "resnet_acmix26", "--shift", "tensor", "--baseline", "resnet_acmix26",
         "--img-size", "64", "-b", "onnxruntime,tensorrt", "--iterations", "3", "--warmup-iterations", "1",
         "--threads", "1", "--no-memory"],
        tmp_path, columns=100,
    )  # fmt: skip
    assert code == 0, out
    table = out[out.index("acmix-deploy bench:"):]
    assert "…" not in table  # no cell cut short
    grid = table[: table.index("(1) ")]  # the notes under the table are lines the terminal wraps, not cells
    rows = [line for line in grid.splitlines() if line.strip()]
    assert all(len(line) <= 100 for line in rows), max(rows, key=len)
    header = next(line for line in rows if "backend" in line and "median" in line)
    for column in ("batch", "model", "p90", "img/s", "CV", "ratio", "note"):
        assert column in header
    ort = {m.group(1): m.group(2) for m in re.finditer(r"onnxruntime\s+1\s+(\S+)\s+([\d.,]+)", table)}
    assert set(ort) == {"resnet_acmix26[shift=tensor]", "resnet_acmix26[shift=group]"}, table
    assert re.search(r"onnxruntime\s+1\s+resnet_acmix26\[shift=tensor\].*\d\.\d\dx", table)
    assert re.search(r"\(1\) tensorrt, resnet_acmix26\[shift=tensor\]: unavailable: ", table)
