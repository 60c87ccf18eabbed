"""The wheel ships the model zoo cards inside the package, and models/ is not a top-level package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0 and "hatchling" in proc.stderr and "No module named" in proc.stderr:
        pytest.skip("hatchling is not installed (pip install 'acmix-deploy[dev]')")
    assert proc.returncode == 0, proc.stderr
    return next(out.glob("acmix_deploy-*.whl"))


def test_wheel_contains_cards_and_no_models_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    cards = [n for n in names if n.startswith("acmix_deploy/zoo/") and n.endswith(".toml")]
    assert len(cards) == len(list((ROOT / "models").glob("*.toml")))
    assert not any(n.startswith("models/") for n in names)
    assert not (ROOT / "models" / "__init__.py").exists()


def test_installed_wheel_finds_cards(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    code = (
        "import acmix_deploy, acmix_deploy.registry as r; "
        "print(acmix_deploy.__file__); print(r.cards_dir()); print(len(r.list_models()))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    module_file, cards_dir, count = proc.stdout.split()
    assert module_file.startswith(str(target)) and cards_dir.startswith(str(target)) and count == str(len(list((ROOT / "models").glob("*.toml"))))
