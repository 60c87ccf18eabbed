"""The tritonserver binary bundled in nvidia-pytriton, run as a child in its own process group.

The wheel ships `pytriton/tritonserver/` (the server, the python backend) with one python-backend
stub per Python version and its shared libraries in `nvidia_pytriton.libs/`. Starting it the way
nvidia-pytriton's own server preparation does: copy the server folder somewhere writable without
the stubs, put the stub of the running interpreter's X.Y into `backends/python`, put the bundled
libraries on the library path and the running interpreter's bin folder first on PATH (the stub then
imports numpy, onnxruntime and acmix_deploy from this environment). One addition: the running
interpreter's own libpython goes first on the library path (sysconfig's LIBDIR), because an older
system libpython of the same version breaks the stub (`RLock has no _recursion_count`).

The server runs in a new session (its own process group, python stubs included), gets SIGKILL when
the process that started it dies (PR_SET_PDEATHSIG), and `stop()` ends the whole group: SIGTERM,
then SIGKILL after a grace period. Nothing listens on anything but the host given (127.0.0.1 by
default).
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from acmix_deploy.errors import AcmixError
from acmix_deploy.serve import SERVE_EXTRA_HINT

DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


@dataclass
class Bundle:
    server_dir: Path  # pytriton/tritonserver
    libs_dir: Path  # nvidia_pytriton.libs
    stub: Path  # python_backend_stubs/<X.Y>/triton_python_backend_stub


def find_bundle() -> Bundle:
    """Where nvidia-pytriton keeps tritonserver; one line saying what to install when it is missing."""
    if not sys.platform.startswith("linux"):
        raise AcmixError(f"the bundled tritonserver runs on Linux x86_64 only; {SERVE_EXTRA_HINT}")
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise AcmixError(f"serving needs nvidia-pytriton (it ships tritonserver): {SERVE_EXTRA_HINT}")
    package = Path(list(spec.submodule_search_locations)[0])
    server_dir = package / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not (server_dir / "bin" / "tritonserver").is_file():
        raise AcmixError(f"{server_dir} has no bin/tritonserver; reinstall nvidia-pytriton ({SERVE_EXTRA_HINT})")
    if not stub.is_file():
        raise AcmixError(f"nvidia-pytriton has no python backend stub for Python {version}")
    return Bundle(server_dir, package.parent / "nvidia_pytriton.libs", stub)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port(host: str, port: int, option: str) -> None:
    """One line when `port` is taken (before the server starts and fails with a log full of lines)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AcmixError(f"port {port} on {host} is taken ({option}); choose another") from None
            raise AcmixError(f"cannot listen on {host}:{port} ({option}): {exc.strerror}") from None


def prepare_server(bundle: Bundle, workdir: Path) -> Path:
    """A writable copy of the server folder with this interpreter's stub in backends/python."""
    dest = workdir / "tritonserver"
    shutil.copytree(bundle.server_dir, dest, ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"))
    shutil.copy2(bundle.stub, dest / "backends" / "python" / "triton_python_backend_stub")
    return dest


def server_env(bundle: Bundle) -> dict[str, str]:
    env = dict(os.environ)
    libdirs = [sysconfig.get_config_var("LIBDIR") or "", str(bundle.libs_dir), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = ":".join(d for d in libdirs if d)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def remove_stale_copies(tmp: Path | None = None) -> None:
    """Server copies left by a command that was killed (it could not clean up): those whose owner
    process no longer exists."""
    for folder in Path(tmp or tempfile.gettempdir()).glob("acmix-triton-*"):
        try:
            owner = int((folder / "owner.pid").read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):  # not ours, not readable, or still being written
            continue


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent dies (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


class TritonServer:
    """tritonserver on `repository`; use as a context manager or call start() / stop()."""

    def __init__(self, repository: str | os.PathLike[str], host: str = "127.0.0.1", http_port: int | None = None,
                 grpc_port: int | None = None, metrics_port: int | None = None, exit_timeout_s: int = 5,
                 log_verbose: int = 0) -> None:
        self.repository = Path(repository).resolve()
        self.host = host
        self.http_port = http_port if http_port is not None else free_port(host)
        self.grpc_port = grpc_port if grpc_port is not None else free_port(host)
        self.metrics_port = metrics_port if metrics_port is not None else free_port(host)
        self.exit_timeout_s = exit_timeout_s
        self.log_verbose = log_verbose
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"{self._client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    def command(self, server: Path) -> list[str]:
        return [
            str(server / "bin" / "tritonserver"), f"--model-repository={self.repository}",
            f"--backend-directory={server / 'backends'}", f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}", f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}", "--allow-metrics=true", "--allow-gpu-metrics=false",
            f"--exit-timeout-secs={self.exit_timeout_s}", f"--log-verbose={self.log_verbose}",
        ]

    def start(self, ready_timeout_s: float = 120.0) -> TritonServer:
        if not self.repository.is_dir():
            raise AcmixError(f"model repository {self.repository} does not exist")
        for option, port in (("--http-port", self.http_port), ("--grpc-port", self.grpc_port), ("--metrics-port", self.metrics_port)):
            check_port(self.host, port, option)
        bundle = find_bundle()
        remove_stale_copies()
        self.workdir = Path(tempfile.mkdtemp(prefix="acmix-triton-"))
        (self.workdir / "owner.pid").write_text(str(os.getpid()))
        server = prepare_server(bundle, self.workdir)
        self.log_path = self.workdir / "tritonserver.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(server), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=server_env(bundle), start_new_session=True, preexec_fn=_die_with_parent,
            )
        try:
            self.wait_ready(ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def error_line(self) -> str:
        """The first error the server logged (E-lines of Triton's log format)."""
        if self.log_path is None or not self.log_path.exists():
            return "no log"
        lines = self.log_path.read_text(errors="replace").splitlines()
        errors = [ln for ln in lines if ln[:1] == "E" and ln[1:5].isdigit() and "CudaDriverHelper" not in ln]
        pick = errors[0] if errors else (lines[-1] if lines else "no output")
        return pick.split('] ', 1)[-1].strip('"')[:300]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AcmixError(f"tritonserver exited with code {self.process.returncode}: {self.error_line()}")
            if self.ready():
                return
            time.sleep(0.2)
        raise AcmixError(f"tritonserver was not ready after {timeout_s:.0f} s: {self.error_line()}")

    def group_alive(self) -> bool:
        if self.process is None:
            return False
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM to the process group, SIGKILL after the grace period; removes the server copy."""
        grace = self.exit_timeout_s + 5 if grace_s is None else grace_s
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            deadline = time.monotonic() + 10
            while self.group_alive() and time.monotonic() < deadline:  # stubs exit after their parent
                time.sleep(0.05)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
