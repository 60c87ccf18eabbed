"""Shared test helpers: small model overrides that keep every registered model fast on 2 CPU cores,
the one CLI runner (`run_cli`), and the session's one trained tiny model (`trained`)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch

if TYPE_CHECKING:
    from tests.tiny_onnx_models import TrainedDigits

torch.set_num_threads(min(2, os.cpu_count() or 1))

# Overrides that shrink each family while keeping every code path (stride 2, shifted windows, ...).
SMALL = {
    "resnet": dict(width=16, k_att=3, img_size=64, num_classes=10),
    "swin": dict(width=32, heads=2, window=4, img_size=64, num_classes=10),
    # head_dim 8; stages 1-2 take the folded-fc deploy path, 3-4 the unfolded one
    "pvt": dict(embed_dims=[8, 16, 40, 64], heads=[1, 2, 5, 8], depths=[1, 1, 1, 1], img_size=64, num_classes=10),
    "san": dict(width=32, kernels=[3, 3, 3, 3, 3], layers=[1, 1, 1, 1, 1], img_size=64, num_classes=10),
}


def small_overrides(name: str) -> dict:
    from acmix_deploy.registry import get_card

    return dict(SMALL[get_card(name).arch])


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> TrainedDigits:
    """The tiny ACmix-like model trained on scikit-learn digits, exported once per session."""
    from tests.tiny_onnx_models import cached_trained

    return cached_trained(tmp_path_factory)


@pytest.fixture()
def artifacts(tmp_path, monkeypatch) -> Path:
    """A fresh artifact workspace, made the default through ACMIX_DEPLOY_WORKSPACE."""
    ws = tmp_path / "artifacts"
    monkeypatch.setenv("ACMIX_DEPLOY_WORKSPACE", str(ws))
    return ws


@dataclass(frozen=True)
class CliRun:
    """What one `acmix-deploy` call did: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as JSON (a command run with a printing --json writes one document)."""
        return json.loads(self.out)

    @property
    def text(self) -> str:
        return self.out + self.err

    def error_lines(self) -> list[str]:
        """The `error: ...` lines on stderr (the CLI promises exactly one on a failure)."""
        return [ln for ln in self.err.splitlines() if ln.startswith("error:")]

    def __iter__(self) -> Iterator[Any]:
        """`code, out, err = run_cli(...)`."""
        return iter((self.code, self.out, self.err))


@contextlib.contextmanager
def _environ(env: dict[str, str] | None, cwd: Path | str | None) -> Iterator[None]:
    saved, here = dict(os.environ), os.getcwd()
    os.environ.update(env or {})
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        os.chdir(here)


def _exit_code(exc: SystemExit) -> int:
    return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def run_cli(*args: str | os.PathLike, fresh: bool = False, cwd: Path | str | None = None,
            env: dict[str, str] | None = None, timeout: float = 600) -> CliRun:
    """Run `acmix-deploy ARGS` through the console entry (its one-line error handler included): in
    this process (fast), or with `fresh` in a new interpreter (what imports it pays, signals, exit)."""
    argv = [str(a) for a in args]
    if fresh:
        script = Path(sys.executable).with_name("acmix-deploy")
        cmd = [str(script)] if script.exists() else [sys.executable, "-m", "acmix_deploy.cli"]
        proc = subprocess.run([*cmd, *argv], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout)
        return CliRun(proc.returncode, proc.stdout, proc.stderr)
    from acmix_deploy.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with _environ(env, cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = _exit_code(exc)
    return CliRun(code, out.getvalue(), err.getvalue())


_NUMBER = r"([-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?)"
_PARITY_FIELDS = {"max_abs": rf"max abs {_NUMBER}", "limit": rf"\(limit {_NUMBER}", "cosine": rf"cosine {_NUMBER}",
                  "agreement": rf"top-1 agreement {_NUMBER}", "samples": rf"on {_NUMBER} held-out inputs"}


def parity_numbers(line: str) -> dict[str, float]:
    """The numbers of a printed PASSED / FAILED parity line (those present): max_abs, limit, cosine,
    agreement, samples; so a test asserts the numbers, not the word."""
    found = {key: re.search(pattern, line) for key, pattern in _PARITY_FIELDS.items()}
    return {key: float(m.group(1)) for key, m in found.items() if m}
