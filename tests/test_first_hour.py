"""A new user's first hour: the README's three commands, a moved workspace, what the output looks like.

The mission chain runs exactly as the README shows it (`export --model resnet_acmix50`,
`build-trt --fp16`, `bench`), in a fresh temporary workspace, as separate processes; only the
documented ACMIX_DEPLOY_BENCH_DURATION_S shortens bench's timing. TensorRT-RTX (dev extra) builds the
engine ahead of time on a CPU; bench then reports TensorRT as unavailable and measures ONNX Runtime.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acmix_deploy.runners.trt_import import TENSORRT, TENSORRT_RTX, _try_import

needs_rtx = pytest.mark.skipif(
    _try_import(TENSORRT_RTX)[0] is None and _try_import(TENSORRT)[0] is None,
    reason="needs TensorRT or TensorRT-RTX (pip install -e '.[dev]')",
)


def acmix(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    """`acmix-deploy ARGS` in `cwd`, stdout and stderr piped (not a terminal). The timeout is generous:
    on the shared development VM (load 16 on 2 cores) one export took 450 s of wall time for 50 s of CPU."""
    script = Path(sys.executable).with_name("acmix-deploy")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "acmix_deploy.cli"]
    full_env = {**os.environ, "COLUMNS": "80", **(env or {})}
    full_env.pop("ACMIX_DEPLOY_WORKSPACE", None)
    return subprocess.run([*cmd, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def ort_rows(stdout: str) -> dict[str, float]:
    """{model label: median ms} of the onnxruntime rows of bench's table."""
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"\s*onnxruntime\s+1\s+(\S+)\s+([\d,]+(?:\.\d+)?)\s", line)
        if m:
            rows[m.group(1)] = float(m.group(2).replace(",", ""))
    return rows


def cpu_seconds() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


@pytest.mark.slow
@needs_rtx
def test_the_three_readme_commands_chain_on_a_cpu(tmp_path):
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    export = acmix("export", "--model", "resnet_acmix50", cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    build = acmix("build-trt", "--fp16", cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    bench = acmix("bench", cwd=tmp_path, env={"ACMIX_DEPLOY_BENCH_DURATION_S": "1"})
    assert bench.returncode == 0, bench.stderr
    cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - t0
    print(f"three commands: {cpu:.0f} s of CPU, {wall:.0f} s wall")
    # the machine is shared: CPU time is what the chain costs; wall time grows with other people's load
    assert cpu < 240

    # piped: one line per phase of each long step, and no path split across lines
    for text, phase in ((export.stdout, "exporting resnet_acmix50 at 224x224"),
                        (export.stdout, "verifying against the PyTorch reference model"),
                        (build.stdout, "measuring fp32 activation ranges on 16 inputs"),
                        (build.stdout, "verifying against fp32 on 32 held-out inputs"),
                        (bench.stderr, "onnxruntime: timing batch 1")):  # fmt: skip
        assert sum(phase in line for line in text.splitlines()) == 1, (phase, text)
    assert re.search(r"^wrote \S+/resnet_acmix50_224\.onnx \(", export.stdout, re.M)
    assert re.search(r"^wrote \S+\.fp16\.rtx\.engine and \S+\.engine\.json$", build.stdout, re.M), build.stdout
    assert "\x1b[" not in export.stdout + build.stdout + bench.stdout  # no escape codes in a log

    # build-trt gave the batch-1 export a batch axis, so the engine serves a batch range
    assert "takes batch 1 only: exporting resnet_acmix50 again with a dynamic batch" in build.stdout
    engine = ws_newest(tmp_path, "engine")
    side = json.loads(Path(engine + ".json").read_text())
    built = side["profiles"]["images"]
    assert built["min"][0] == 1 and built["max"][0] >= 8 and side["precision"] == "fp16"

    # bench: ONNX Runtime rows of the model and of its registry baseline, both fp32; TensorRT unavailable
    rows = ort_rows(bench.stdout)
    assert set(rows) == {"resnet_acmix50", "resnet50"} and all(ms > 0 for ms in rows.values()), bench.stdout
    picked = bench.stderr
    assert re.search(r"onnxruntime: \S+/resnet_acmix50_224_dyn\.onnx \(the fp32 export", picked), picked
    assert "baseline resnet50 on onnxruntime: exported for this run at 224 px (fp32" in picked
    assert picked.count("no input given") == 1 and "no input given" not in bench.stdout
    assert re.search(r"tensorrt, resnet_acmix50: unavailable: TensorRT needs a CUDA GPU", bench.stdout)
    assert re.search(r"onnxruntime\s+1\s+resnet_acmix50\s+[\d.,]+\s+[\d.,]+\s+[\d.,]+\s+[\d.]+%\s*!?\s+\d\.\d\dx",
                     bench.stdout), bench.stdout  # the ratio to the baseline


def ws_newest(root: Path, kind: str) -> str:
    from acmix_deploy import workspace as ws

    return ws.newest(kind, workspace=root / "artifacts").path


@pytest.mark.slow
@needs_rtx
def test_a_moved_workspace_still_builds_and_benches(tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    small = ("--img-size", "64")
    assert acmix("export", "--model", "resnet_acmix26", *small, "--dynamic-batch", cwd=first).returncode == 0
    built = acmix("build-trt", "--fp16", "--max-batch", "8", cwd=first)
    assert built.returncode == 0, built.stderr
    manifest = (first / "artifacts" / "manifest.json").read_text()
    assert str(first) not in manifest  # paths relative to the workspace
    engine = Path(ws_newest(first, "engine"))
    assert json.loads(Path(str(engine) + ".json").read_text())["onnx_path"] == "resnet_acmix26_64_dyn.fp16.onnx"

    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(first, moved)
    build = acmix("build-trt", "--max-batch", "8", cwd=moved)  # fp32 engine from the moved export
    assert build.returncode == 0, build.stderr
    assert f"input: {moved}/artifacts/resnet_acmix26/resnet_acmix26_64_dyn.onnx" in build.stdout
    bench = acmix("bench", "--iterations", "3", "--no-memory", cwd=moved)
    assert bench.returncode == 0, bench.stderr
    assert set(ort_rows(bench.stdout)) == {"resnet_acmix26", "resnet26"}
    assert f"tensorrt: {moved}/artifacts/resnet_acmix26/resnet_acmix26_64_dyn.rtx.engine" in bench.stderr
    from acmix_deploy.runners.sidecar import read_sidecar

    side = read_sidecar(ws_newest(moved, "engine"))
    assert Path(side.onnx_path) == moved / "artifacts" / "resnet_acmix26" / "resnet_acmix26_64_dyn.onnx"
