"""fileio's rules on their own: which temps a run removes, and what counts as the same file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acmix_deploy import fileio
from acmix_deploy.errors import AcmixError


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_cleanup_rules(tmp_path: Path) -> None:
    dest = tmp_path / "m.onnx"
    host = fileio._host_tag()
    other = "0" * 6 if host != "0" * 6 else "1" * 6
    dead, live = _dead_pid(), os.getpid()
    names = {
        "dead-here": f".m.onnx.{dead}.{host}abcdef.tmp",
        "live-here": f".m.onnx.{live}.{host}abcdef.tmp",
        "other-host-fresh": f".m.onnx.{dead}.{other}abcdef.tmp",
        "other-host-old": f".m.onnx.{dead}.{other}fedcba.tmp",
        "other-target": f".n.onnx.{dead}.{host}abcdef.tmp",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    old = time.time() - fileio.FOREIGN_TEMP_AGE_S - 60
    os.utime(tmp_path / names["other-host-old"], (old, old))
    removed = {p.name for p in fileio.remove_stale_temps(dest)}
    assert removed == {names["dead-here"], names["other-host-old"]}


def test_atomic_path_failure_keeps_old_file_and_no_temp(tmp_path: Path) -> None:
    dest = tmp_path / "r.json"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("the check failed")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_mode_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        fileio.write_bytes_atomic(tmp_path / "a.bin", b"1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o600
    fileio.write_bytes_atomic(tmp_path / "b.bin", b"1")
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o666 & ~old


def test_collisions_paths_links_and_companions(tmp_path: Path) -> None:
    src = tmp_path / "m.onnx"
    src.write_bytes(b"x")
    os.link(src, tmp_path / "hard.onnx")
    os.symlink(src, tmp_path / "soft.onnx")
    for out in (src, tmp_path / "hard.onnx", tmp_path / "soft.onnx", tmp_path / "sub" / ".." / "m.onnx"):
        with pytest.raises(AcmixError, match="would overwrite the input"):
            fileio.check_collisions({"--onnx": src}, {"-o": out})
    (tmp_path / "e.engine.json").write_bytes(b"{}")  # an engine's sidecar is an output too
    with pytest.raises(AcmixError, match="would overwrite"):
        fileio.check_collisions({"--onnx": tmp_path / "e.engine.json"}, {"-o": tmp_path / "e.engine"})
    fileio.check_collisions({"--onnx": src}, {"-o": tmp_path / "new.onnx"})  # a new file is fine


def test_destination_checks(tmp_path: Path) -> None:
    with pytest.raises(AcmixError, match="is a folder"):
        fileio.check_destination(tmp_path, "-o")
    with pytest.raises(AcmixError, match="pseudo filesystem"):
        fileio.check_destination("/proc/self/x.onnx", "-o", create=False)
    if Path("/dev/shm").is_dir():
        fileio.check_destination("/dev/shm/x.onnx", "-o", create=False)  # an ordinary tmpfs
    os.mkfifo(tmp_path / "p")
    with pytest.raises(AcmixError, match="not a regular file"):
        fileio.check_destination(tmp_path / "p", "-o")
    with pytest.raises(AcmixError, match="not a regular file"):
        fileio.check_input_file(tmp_path / "p")


def test_atomic_dir_replace_swaps_whole_folders(tmp_path: Path) -> None:
    """replace=True (the Triton repository): the old folder until the new one is complete, then only the new."""
    dest = tmp_path / "repo"
    with fileio.atomic_dir(dest) as tmp:
        (tmp / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), fileio.atomic_dir(dest, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("a config failed validation")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"] and os.listdir(dest) == ["old.txt"]
    with fileio.atomic_dir(dest, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"] and os.listdir(dest) == ["new.txt"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o777 & ~fileio.current_umask()
