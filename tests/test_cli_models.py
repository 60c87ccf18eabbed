"""CLI: list-models, info, doctor, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from acmix_deploy.registry import create_model, list_models
from tests.conftest import run_cli


def test_list_models_json():
    out = run_cli("list-models", "--json")
    assert out.code == 0, out.err
    rows = {r["name"]: r for r in out.json()}
    assert len(rows) == len(list_models())
    assert rows["resnet_acmix50"]["params_m"] == 18.33 and rows["swin_acmix_s"]["params_m"] == 50.35
    assert rows["resnet_acmix50"]["paper_params_m"] == 18.6 and rows["resnet_acmix50"]["paper_gmacs"] == 3.6
    assert rows["resnet_acmix50"]["gmacs"] == 3.5 and rows["swin_acmix_t"]["gmacs"] == 4.65
    assert rows["resnet_acmix50"]["paper_top1"] == 77.8


def test_list_models_imports_no_heavy_backend():
    """list-models reads the cards only: a fresh interpreter runs it without torch / onnxruntime / tensorrt."""
    code = (
        "import sys\n"
        "sys.argv = ['acmix-deploy', 'list-models', '--json']\n"
        "from acmix_deploy.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = sorted(m for m in ('torch', 'onnxruntime', 'tensorrt') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stderr.splitlines()
    assert len(json.loads(out.stdout)) == len(list_models())


def test_info_json_reports_stage_split():
    out = run_cli("info", "--model", "resnet_acmix50", "--json")
    assert out.code == 0, out.err
    data = out.json()
    assert abs(data["conv_matmul_macs"] / 3.37e9 - 1) < 0.01
    assert abs(data["total_macs"] / 3.6e9 - 1) < 0.1
    assert len(data["blocks"]) == 16 and data["stage1_macs"] > 0


def test_info_unknown_model_one_line_exit_2():
    out = run_cli("info", "--model", "nope")
    assert out.code == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "valid models: " in lines[0] and "resnet26, " in lines[0] and "Traceback" not in out.err


def test_info_with_checkpoint_reports_rates(tmp_path):
    model = create_model("resnet_acmix26", num_classes=10)
    with torch.no_grad():
        model.layer1[0].conv2.rate1.fill_(0.25)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    out = run_cli("info", "--model", "resnet_acmix26", "--checkpoint", str(tmp_path / "w.pth"), "--json")
    # num_classes differs from the card: strict load fails with the key list, non-strict loads
    assert out.code == 2 and "wrong shape: fc.weight" in out.err and "Traceback" not in out.err
    out = run_cli("info", "--model", "resnet_acmix26", "--checkpoint", str(tmp_path / "w.pth"), "--non-strict", "--json")
    assert out.code == 0, out.err
    data = out.json()  # the load report is on stderr: stdout is the JSON document alone
    assert out.err.startswith("warning: partial load") and "fc.weight" in out.err
    assert data["blocks"][0]["rate1"] == 0.25 and data["blocks"][0]["rate2"] == 0.5


def test_doctor_lists_backends():
    out = run_cli("doctor", "--json")
    assert out.code == 0, out.err
    names = {r["name"]: r for r in out.json()}
    assert {"torch", "CUDA", "onnxruntime", "tensorrt", "tensorrt_rtx", "onnx-graphsurgeon"} <= set(names)
    assert names["torch"]["available"] and names["torch"]["version"] == torch.__version__


def test_help_works():
    out = run_cli("--help", fresh=True)
    assert out.code == 0 and "list-models" in out.out
