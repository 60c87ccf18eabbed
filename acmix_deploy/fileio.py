"""The one module that writes files: atomic outputs, input/output checks, temp-file hygiene.

Promises (README "Reliability"):
- an output appears complete or not at all: it is written to `.<name>.<pid>.<token>.tmp` beside the
  target and renamed onto it only when the write succeeded;
- files and folders get the mode a plain `open()` / `mkdir()` under the caller's umask gives (not
  mkstemp's 0600 / mkdtemp's 0700), so artifacts on a shared volume stay readable as the user expects;
- a temp whose writer died (SIGKILL, power loss) is removed by the next write of the same target;
  a temp whose writer is alive (a concurrent run) is never touched;
- every command checks its outputs against its inputs (resolved paths, symlinks, hard links) and
  every destination (existing folder, unwritable parent, /proc ...) before any work starts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from acmix_deploy.errors import AcmixError

TMP_SUFFIX = ".tmp"
# Test hook: seconds to sleep once a temp file is complete, before it is renamed (signal tests).
PAUSE_ENV = "ACMIX_DEPLOY_TEST_PAUSE_BEFORE_RENAME"
# Paths under these roots are not files a user can keep; writing there is refused up front.
_PSEUDO_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
_SHM = Path("/dev/shm")

# Temps of this process that are still being written (removed on the way out of atomic_path).
_live: set[Path] = set()


# --------------------------------------------------------------------------------------------------
# modes
# --------------------------------------------------------------------------------------------------
def current_umask() -> int:
    """The process umask (read by setting and restoring it: POSIX has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    return 0o777 & ~current_umask()


# --------------------------------------------------------------------------------------------------
# temp names and dead-writer cleanup
# --------------------------------------------------------------------------------------------------
def _host_tag() -> str:
    """6 hex digits of the host name: a PID only means something on the host (or container) that
    wrote it, so temps of another host sharing the volume are left alone unless they are old."""
    import hashlib
    import socket

    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def temp_path(dest: Path) -> Path:
    """`.<name>.<pid>.<host><random>.tmp` beside `dest`: the PID tells a later run whether the writer lives."""
    return dest.parent / f".{dest.name}.{os.getpid()}.{_host_tag()}{secrets.token_hex(3)}{TMP_SUFFIX}"


def _temp_pattern(dest: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(dest.name)}\.(\d+)\.([0-9a-f]{{6}})[0-9a-f]+{re.escape(TMP_SUFFIX)}$")


FOREIGN_TEMP_AGE_S = 24 * 3600  # another host's temp older than this is abandoned


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_temps(dest: str | os.PathLike[str]) -> list[Path]:
    """Remove temps of `dest` left by writers that no longer run; return what was removed."""
    dest = Path(dest)
    pattern = _temp_pattern(dest)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return removed
    host = _host_tag()
    for entry in entries:
        match = pattern.match(entry.name)
        if not match:
            continue
        if match.group(2) == host:
            if pid_alive(int(match.group(1))):
                continue
        else:
            with contextlib.suppress(OSError):
                if time.time() - entry.stat(follow_symlinks=False).st_mtime < FOREIGN_TEMP_AGE_S:
                    continue
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def cleanup_live_temps() -> None:
    """Remove this process's unfinished temps (called on the way out of a signal)."""
    for path in list(_live):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        _live.discard(path)


def _pause_for_tests() -> None:
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        time.sleep(float(pause))


# --------------------------------------------------------------------------------------------------
# destination and input checks (before any work)
# --------------------------------------------------------------------------------------------------
def _label(path: Path, option: str | None) -> str:
    return f"{option} {path}" if option else str(path)


def _under_pseudo_fs(path: Path) -> bool:
    resolved = path.resolve()
    if resolved == _SHM or _SHM in resolved.parents:  # /dev/shm is an ordinary tmpfs
        return False
    return any(resolved == root or root in resolved.parents for root in _PSEUDO_ROOTS)


def ensure_writable_dir(path: Path) -> None:
    """Create the parent folder of `path` (with umask modes) or fail with one line."""
    parent = Path(path).parent
    if parent.exists() and not parent.is_dir():
        raise AcmixError(f"cannot write {path}: {parent} is not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AcmixError(f"cannot create output folder {parent}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise AcmixError(f"output folder {parent} is not writable")


def check_destination(path: str | os.PathLike[str], option: str | None = None, create: bool = True) -> Path:
    """Refuse, before any work, an output that cannot become a regular file: an existing folder,
    a special file (pipe, device), a pseudo filesystem (/proc, /sys, /dev), an unwritable folder."""
    path = Path(path)
    label = _label(path, option)
    if path.is_dir():
        raise AcmixError(f"output {label} is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise AcmixError(f"output {label} is not a regular file")
    if _under_pseudo_fs(path):
        raise AcmixError(f"output {label} is on a system pseudo filesystem; choose a normal folder")
    if create:
        ensure_writable_dir(path)
    elif path.parent.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        raise AcmixError(f"output folder {path.parent} is not writable")
    return path


def check_input_file(path: str | os.PathLike[str], what: str = "input", allow_empty: bool = False) -> Path:
    """An input must be an existing, readable, regular file (a pipe would block, a folder is no file)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AcmixError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise AcmixError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise AcmixError(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise AcmixError(f"{what} {path} is not a regular file (pipe, socket or device)")
    if not os.access(path, os.R_OK):
        raise AcmixError(f"{what} {path} is not readable")
    if st.st_size == 0 and not allow_empty:
        raise AcmixError(f"{what} {path} is empty")
    return path


def probe_write(dest: str | os.PathLike[str]) -> None:
    """Create and remove a temp beside `dest`: proves, in a millisecond, that the folder takes a new file
    (permissions, read-only or full file systems) before a long computation."""
    dest = check_destination(dest)
    tmp = temp_path(dest)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise AcmixError(f"cannot write to {dest.parent}: {exc.strerror or exc}") from None
    with contextlib.suppress(OSError):
        tmp.unlink()


def _identity(path: Path) -> tuple[Path, tuple[int, int] | None]:
    try:
        st = path.stat()
        inode = (st.st_dev, st.st_ino)
    except OSError:
        inode = None
    return path.resolve(), inode


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when `a` and `b` name one file: equal resolved paths (symlinks followed) or one inode."""
    (ra, ia), (rb, ib) = _identity(Path(a)), _identity(Path(b))
    return ra == rb or (ia is not None and ia == ib)


def _companions(path: Path) -> list[Path]:
    """Files written alongside an output (an engine's `<engine>.json` sidecar)."""
    return [path, Path(str(path) + ".json")] if path.suffix in (".engine", ".plan", ".trt") else [path]


def check_collisions(
    inputs: Mapping[str, str | os.PathLike[str] | None] | Iterable[tuple[str, str | os.PathLike[str] | None]],
    outputs: Mapping[str, str | os.PathLike[str] | None] | Iterable[tuple[str, str | os.PathLike[str] | None]],
) -> None:
    """Refuse (one line, before any work) an output that is an input or another output.

    Keys are the option names shown to the user ("--onnx", "-o"). Paths are compared resolved
    (symlinks followed) and by inode (hard links)."""
    ins = [(k, Path(v)) for k, v in (inputs.items() if isinstance(inputs, Mapping) else inputs) if v is not None]
    outs = [(k, Path(v)) for k, v in (outputs.items() if isinstance(outputs, Mapping) else outputs) if v is not None]
    for out_name, out in outs:
        for in_name, src in ins:
            for target in _companions(out):
                if same_file(target, src):
                    raise AcmixError(
                        f"{out_name} {out} would overwrite the input {in_name} {src}; choose another output path"
                    )
    for i, (name_a, a) in enumerate(outs):
        for name_b, b in outs[i + 1:]:
            if same_file(a, b):
                raise AcmixError(f"output files must differ: {name_a} {a} and {name_b} {b} are the same file")


# --------------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------------
# Errors of the write itself (disk full, file too large, quota, read-only, I/O): reported for `dest`.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}


def _write_error(dest: Path, exc: OSError) -> AcmixError:
    return AcmixError(f"cannot write {dest}: {exc.strerror or exc}")


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside `dest` (mode from the umask); rename it onto `dest` only if the block
    succeeds. A failure, an exception or a signal leaves `dest` as it was and no temp behind."""
    dest = Path(dest)
    check_destination(dest)
    remove_stale_temps(dest)
    tmp = temp_path(dest)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies, like open()
    except OSError as exc:
        raise _write_error(dest, exc) from None
    os.close(fd)
    _live.add(tmp)
    try:
        yield tmp
        _commit(tmp, dest)
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS:
            raise
        raise _write_error(dest, exc) from None
    finally:
        _discard(tmp)


def _commit(tmp: Path, dest: Path, replace_dir: bool = False) -> None:
    """Rename a finished temp onto `dest` (one step). With `replace_dir` an existing `dest` folder is
    first renamed aside to a temp name of this process (which the next write of `dest` removes should
    this one die before it does) and removed once the new folder is in place."""
    _pause_for_tests()
    old = temp_path(dest) if replace_dir and (dest.exists() or dest.is_symlink()) else None
    try:
        if old is not None:
            os.replace(dest, old)
        try:
            os.replace(tmp, dest)
        except OSError:
            if old is not None:
                os.replace(old, dest)  # put the previous folder back
            raise
    except OSError as exc:
        raise _write_error(dest, exc) from None
    if old is not None:
        _discard(old)


def _discard(tmp: Path) -> None:
    """Remove a temp (file or folder) of this process, quietly; it is no longer live."""
    _live.discard(tmp)
    with contextlib.suppress(OSError):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def write_bytes_atomic(dest: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(dest)


def write_text_atomic(dest: str | os.PathLike[str], text: str) -> Path:
    return write_bytes_atomic(dest, text.encode())


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike[str], replace: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside `dest` (mode from the umask) to fill; it becomes `dest` on success.
    Without `replace`, `dest` must not exist when the block ends (the caller removes what it may remove
    first); with it, an existing `dest` is swapped out (see `_commit`) and removed, so readers see the
    old folder or the new one, never a mix. A failure leaves `dest` as it was and no temp behind."""
    dest = Path(dest)
    ensure_writable_dir(dest)
    remove_stale_temps(dest)
    tmp = temp_path(dest)
    try:
        tmp.mkdir(mode=0o777)  # umask applies, like mkdir
    except OSError as exc:
        raise _write_error(dest, exc) from None
    _live.add(tmp)
    try:
        yield tmp
        _commit(tmp, dest, replace_dir=replace)
    finally:
        _discard(tmp)


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """An exclusive advisory lock (flock) on `path` (created empty if missing) for a read-modify-write
    of a shared file: two commands updating one workspace manifest never lose each other's entry."""
    import fcntl

    path = Path(path)
    ensure_writable_dir(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise AcmixError(f"cannot lock {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def sha256_file(path: str | os.PathLike[str]) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
