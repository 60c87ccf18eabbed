"""Catalogue cases that need a process of their own: signals during a write, a file size limit
(`ulimit -f`), two runs on one workspace at once, and file modes under two umasks.

Signals are sent once the output's temp file exists: the test-only variable
ACMIX_DEPLOY_TEST_PAUSE_BEFORE_RENAME holds the writer between a complete temp and its rename."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CliRun, run_cli
from tests.reliability.conftest import check_promises, has_engine, sha256_tree, temps

ROOT = Path(__file__).resolve().parents[2]
OLD = b"old content the user keeps\n"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("ACMIX_DEPLOY_WORKSPACE", None)
    env.pop("ACMIX_DEPLOY_TRACEBACK", None)
    env.update(extra)
    return env


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "acmix_deploy.cli", *args]


def _wait_for_temp(proc: subprocess.Popen, folder: Path, name: str, timeout: float = 120.0) -> Path:
    pattern = re.compile(rf"^\.{re.escape(name)}\.{proc.pid}\.[0-9a-f]+\.tmp$")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in folder.iterdir() if pattern.match(p.name)]
        if found:
            return found[0]
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"ended (exit {proc.returncode}) before writing its temp:\n{out}\n{err}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no temp file appeared")


def _interrupted_write(args: list[str], folder: Path, target: str, sig: int) -> tuple[CliRun, Path]:
    """Start `args`, send `sig` once the temp of `target` is complete; (outcome, temp path)."""
    proc = subprocess.Popen(_cli(args), cwd=folder, env=_env(ACMIX_DEPLOY_TEST_PAUSE_BEFORE_RENAME="60"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tmp = _wait_for_temp(proc, folder, target)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return CliRun(proc.returncode, out, err), tmp


def _export_args(folder: Path) -> list[str]:
    return ["export", "--checkpoint", str(folder / "tiny.pth"), "-o", str(folder / "out.onnx"), "--no-optimize",
            "--no-verify"]


def _build_args(folder: Path) -> list[str]:
    return ["build-trt", "--onnx", str(folder / "tiny.onnx"), "-o", str(folder / "out.engine"), "--runtime",
            "tensorrt-rtx", "--min-batch", "1", "--opt-batch", "1", "--max-batch", "1"]


# ---- signals ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig, code, line", [(signal.SIGTERM, 143, "error: terminated"),
                                             (signal.SIGINT, 130, "error: interrupted")], ids=["sigterm", "sigint"])
def test_export_signal_keeps_old_file(case_dir: Path, sig: int, code: int, line: str) -> None:
    (case_dir / "out.onnx").write_bytes(OLD)
    before = sha256_tree(case_dir)
    outcome, tmp = _interrupted_write(_export_args(case_dir), case_dir, "out.onnx", sig)
    check_promises(outcome, case_dir, before, code, line.removeprefix("error: "))
    assert outcome.error_lines() == [line]


def test_build_trt_sigterm_keeps_old_engine(case_dir: Path, artifacts) -> None:
    if not has_engine(artifacts):
        pytest.skip("TensorRT-RTX cannot build an engine here")
    (case_dir / "out.engine").write_bytes(OLD)
    before = sha256_tree(case_dir)
    outcome, _ = _interrupted_write(_build_args(case_dir), case_dir, "out.engine.json", signal.SIGTERM)
    check_promises(outcome, case_dir, before, 143, "terminated")


@pytest.mark.parametrize("command", ["export", "build-trt"])
def test_sigkill_leaves_a_dead_temp_the_next_run_removes(case_dir: Path, artifacts, command: str) -> None:
    if command == "build-trt" and not has_engine(artifacts):
        pytest.skip("TensorRT-RTX cannot build an engine here")
    target = "out.onnx" if command == "export" else "out.engine"
    args = _export_args(case_dir) if command == "export" else _build_args(case_dir)
    (case_dir / target).write_bytes(OLD)
    outcome, tmp = _interrupted_write(args, case_dir, target if command == "export" else target + ".json",
                                      signal.SIGKILL)
    assert outcome.code == -signal.SIGKILL
    assert (case_dir / target).read_bytes() == OLD  # the old file is intact
    assert tmp.exists()  # SIGKILL cannot be cleaned up after ...
    # ... a live writer's temp (this process's) is never touched by another run's cleanup ...
    live = tmp.with_name(re.sub(r"\.\d+\.", f".{os.getpid()}.", tmp.name, count=1))
    live.write_bytes(b"a concurrent writer")
    done = run_cli(*args)  # the next run (in-process: the same code path, without a second start-up)
    assert done.code == 0, done.err[-2000:]
    assert not tmp.exists()  # ... the next run removed the dead writer's temp
    assert live.exists()
    live.unlink()
    assert not temps(case_dir)
    assert (case_dir / target).read_bytes() != OLD


# ---- a file size limit (a full disk as the writer sees it) -------------------------------------------
@contextlib.contextmanager
def _file_size_limit(kib: int):
    """RLIMIT_FSIZE, what `ulimit -f` sets, on this process for the duration of one in-process run
    (main() ignores SIGXFSZ, so a write past the limit fails with EFBIG instead of killing the process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_file_size_limit_onnx(case_dir: Path) -> None:
    (case_dir / "out.onnx").write_bytes(OLD)
    before = sha256_tree(case_dir)
    with _file_size_limit(64):
        outcome = run_cli(*_export_args(case_dir))
    check_promises(outcome, case_dir, before, 2, "out.onnx")
    assert "file too large" in outcome.error_lines()[0].lower()


def test_file_size_limit_checkpoint(case_dir: Path) -> None:
    """train's first write is best.pth (torch.save): an old best.pth stays as it was."""
    run = case_dir / "run"
    run.mkdir()
    (run / "best.pth").write_bytes(OLD)
    before = sha256_tree(case_dir)
    args = ["train", "--model", "resnet26", "--data", str(case_dir / "images"), "--width", "8", "--img-size", "32",
            "--epochs", "1", "--batch-size", "10", "--workers", "0", "--no-progress", "-o", str(run)]
    with _file_size_limit(64):
        outcome = run_cli(*args)
    check_promises(outcome, case_dir, before, 2, "best.pth")


# ---- two runs on one workspace -----------------------------------------------------------------------
def test_two_concurrent_exports_keep_both_manifest_entries(case_dir: Path) -> None:
    procs = [
        subprocess.Popen(_cli(["export", "--checkpoint", str(case_dir / "tiny.pth"), "--no-optimize", "--no-verify",
                               *extra]), cwd=case_dir, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for extra in (["--batch", "1"], ["--batch", "2"])
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    records = json.loads((case_dir / "artifacts" / "manifest.json").read_text())
    assert sorted(r["meta"]["batch"] for r in records) == [1, 2]
    assert not temps(case_dir)


def test_manifest_lock_under_contention(tmp_path: Path) -> None:
    """Two processes recording 100 artifacts each into one manifest at the same time: all 200 kept."""
    code = (
        "import sys; from acmix_deploy import workspace as ws\n"
        "for i in range(100): ws.record('onnx', 'm', f'{sys.argv[1]}-{i}.onnx', workspace=sys.argv[2])\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, tag, str(tmp_path / "ws")], cwd=tmp_path, env=_env())
             for tag in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    records = json.loads((tmp_path / "ws" / "manifest.json").read_text())
    assert len(records) == 200
    assert not temps(tmp_path)


# ---- modes -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)],
                         ids=["umask022", "umask027"])
def test_modes_follow_the_umask(case_dir: Path, umask: int, file_mode: int, dir_mode: int) -> None:
    old = os.umask(umask)
    try:
        ok = run_cli("export", "--checkpoint", str(case_dir / "tiny.pth"), "--no-optimize", "--no-verify")
        assert ok.code == 0, ok.err
        ok = run_cli("data", "digits", str(case_dir / "d"), "--size", "8", "--npy", str(case_dir / "d.npy"))
        assert ok.code == 0, ok.err
    finally:
        os.umask(old)
    files = [*(case_dir / "artifacts").rglob("*.onnx"), case_dir / "artifacts" / "manifest.json", case_dir / "d.npy",
             next((case_dir / "d" / "train" / "0").iterdir())]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == file_mode, path
    for path in (case_dir / "d", case_dir / "d" / "train", case_dir / "artifacts" / "resnet26"):
        assert stat.S_IMODE(path.stat().st_mode) == dir_mode, path
    assert not temps(case_dir)
