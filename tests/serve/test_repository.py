"""triton-repo: configs for every combination parsed with tritonclient's ModelConfig protobuf, compared
field by field with Triton's documented examples, one negative test per validator check, the batch
rule, engines (stand-in engine + sidecar written by the test), and the atomic write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.serve.conftest import CLASSES, small_onnx, write_engine_with_sidecar

from acmix_deploy.errors import AcmixError
from acmix_deploy.serve import config as cfg
from acmix_deploy.serve.repository import RepoOptions, triton_repo


def _config(repo: Path, name: str):
    return cfg.parse((repo / name / "config.pbtxt").read_text())


def _pb():
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


@pytest.mark.parametrize("backend", ["auto", "python"])
@pytest.mark.parametrize("fp16", [False, True])
@pytest.mark.parametrize("batch", ["N", 1])
def test_every_onnx_combination_parses_and_validates(tmp_path, backend, fp16, batch):
    onnx_file = small_onnx(tmp_path / "m.onnx", batch=batch, fp16_io=fp16, classes=CLASSES)
    ensemble = batch == "N"
    result = triton_repo([onnx_file], tmp_path / "repo", RepoOptions(backend=backend, ensemble=ensemble, max_batch_size=4))
    pb = _pb()
    config = _config(tmp_path / "repo", "tiny_net")
    assert (config.backend == "python") == (backend == "python")
    assert config.platform == ("" if backend == "python" else "onnxruntime_onnx")
    want_type = pb.TYPE_FP16 if fp16 else pb.TYPE_FP32
    assert config.input[0].data_type == want_type and config.output[0].data_type == want_type
    if batch == "N":
        assert config.max_batch_size == 4 and list(config.input[0].dims) == [3, 8, 8]
        assert config.HasField("dynamic_batching")
        assert set(result.models) == {"tiny_net", "tiny_net_preprocess", "tiny_net_classify"}
        ens = _config(tmp_path / "repo", "tiny_net_classify")
        assert ens.platform == "ensemble" and len(ens.instance_group) == 0
        assert [s.model_name for s in ens.ensemble_scheduling.step] == ["tiny_net_preprocess", "tiny_net"]
        assert ens.input[0].data_type == pb.TYPE_STRING
    else:  # static batch 1: max_batch_size 0, the batch axis in dims, no dynamic batching, a note
        assert config.max_batch_size == 0 and list(config.input[0].dims) == [1, 3, 8, 8]
        assert not config.HasField("dynamic_batching")
        assert any("max_batch_size 0" in n for n in result.notes)
    assert config.output[0].label_filename == "labels.txt"
    assert (tmp_path / "repo/tiny_net/labels.txt").read_text().splitlines() == CLASSES
    assert (tmp_path / "repo/tiny_net/1/model.onnx").read_bytes() == onnx_file.read_bytes()


def test_static_batch_above_one_is_refused(tmp_path):
    onnx_file = small_onnx(tmp_path / "m.onnx", batch=4)
    with pytest.raises(AcmixError, match="static batch 4"):
        triton_repo([onnx_file], tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_tensorrt_plan_config_from_sidecar(tmp_path):
    """Stand-in engine bytes + a sidecar written by the test (no real engine can be built for
    TensorRT proper here: TensorRT-RTX engines are refused, see the next test)."""
    pb = _pb()
    onnx_file = small_onnx(tmp_path / "m.onnx", classes=CLASSES)
    for dtype, want in (("float32", pb.TYPE_FP32), ("float16", pb.TYPE_FP16)):
        engine = write_engine_with_sidecar(tmp_path / f"{dtype}.engine", dtype=dtype, onnx_path=onnx_file)
        result = triton_repo([engine], tmp_path / dtype, RepoOptions(instance_kind="KIND_GPU", instance_count=2, ensemble=True))
        assert result.models == ["tiny_net", "tiny_net_preprocess", "tiny_net_classify"]
        assert _config(tmp_path / dtype, "tiny_net_classify").output[0].data_type == want
        config = _config(tmp_path / dtype, "tiny_net")
        assert config.platform == "tensorrt_plan" and config.max_batch_size == 16
        assert config.input[0].data_type == want and list(config.input[0].dims) == [3, 8, 8]
        assert config.parameters["tensorrt_version"].string_value == "10.13.3.9"
        assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU and config.instance_group[0].count == 2
        assert config.output[0].label_filename == "labels.txt"  # class names from the engine's ONNX file
        assert (tmp_path / dtype / "tiny_net/1/model.plan").read_bytes() == engine.read_bytes()
    for dtype, want in (("float32", pb.TYPE_FP32), ("float16", pb.TYPE_FP16)):
        fixed = write_engine_with_sidecar(tmp_path / f"b1_{dtype}.engine", batch=(1, 1, 1), dtype=dtype)
        triton_repo([fixed], tmp_path / f"b1_{dtype}")
        config = _config(tmp_path / f"b1_{dtype}", "tiny_net")
        assert config.max_batch_size == 0 and list(config.input[0].dims) == [1, 3, 8, 8]
        assert config.input[0].data_type == want and not config.HasField("dynamic_batching")


def test_rtx_engines_are_refused(tmp_path):
    engine = write_engine_with_sidecar(tmp_path / "rtx.engine", flavour="tensorrt-rtx")
    with pytest.raises(AcmixError, match="not TensorRT-RTX"):
        triton_repo([engine], tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_engines_from_several_gpus_share_one_model(tmp_path):
    a = write_engine_with_sidecar(tmp_path / "a.engine", cc="8.6")
    b = write_engine_with_sidecar(tmp_path / "b.engine", cc="9.0")
    triton_repo([a, b], tmp_path / "repo")
    config = _config(tmp_path / "repo", "tiny_net")
    assert dict(config.cc_model_filenames) == {"8.6": "model_sm86.plan", "9.0": "model_sm90.plan"}
    assert (tmp_path / "repo/tiny_net/1/model_sm86.plan").is_file() and (tmp_path / "repo/tiny_net/1/model_sm90.plan").is_file()
    c = write_engine_with_sidecar(tmp_path / "c.engine", cc="9.0")
    with pytest.raises(AcmixError, match="distinct build GPUs"):
        triton_repo([b, c], tmp_path / "repo2")


# Triton's documented examples, field by field. Values are restated here (not copied files):
# * onnxruntime_onnx: triton-inference-server/server docs/examples/model_repository/densenet_onnx/config.pbtxt
#   (platform onnxruntime_onnx, max_batch_size, one input with name / data_type TYPE_FP32 / format /
#   dims [3, 224, 224], one output with name / data_type / dims [1000] / reshape / label_filename);
# * tensorrt_plan: docs/user_guide/model_configuration.md, "Minimal Model Configuration" (platform
#   tensorrt_plan, max_batch_size 8, inputs and outputs with name / data_type TYPE_FP32 / dims [16]).
DOC_EXAMPLES = {
    "onnxruntime_onnx": {
        "top": {"name", "platform", "max_batch_size", "input", "output"},
        "input": {"name", "data_type", "format", "dims"},
        "output": {"name", "data_type", "dims", "reshape", "label_filename"},
        "not_ours": {"format": "informational only; Triton takes the layout from dims", "reshape": "densenet's output is 4-D, ours is 2-D"},
    },
    "tensorrt_plan": {
        "top": {"platform", "max_batch_size", "input", "output"},
        "input": {"name", "data_type", "dims"},
        "output": {"name", "data_type", "dims"},
        "not_ours": {},
    },
}


def _set_fields(message) -> set[str]:
    return {f.name for f, _ in message.ListFields()}


@pytest.mark.parametrize("platform", ["onnxruntime_onnx", "tensorrt_plan"])
def test_configs_match_tritons_documented_examples(tmp_path, platform):
    pb = _pb()
    onnx_file = small_onnx(tmp_path / "m.onnx", classes=CLASSES)
    artifact = onnx_file if platform == "onnxruntime_onnx" else write_engine_with_sidecar(tmp_path / "m.engine", onnx_path=onnx_file)
    triton_repo([artifact], tmp_path / "repo")
    config = _config(tmp_path / "repo", "tiny_net")
    example = DOC_EXAMPLES[platform]
    assert config.platform == platform
    assert example["top"] <= _set_fields(config)
    assert example["input"] - set(example["not_ours"]) == _set_fields(config.input[0]) & example["input"]
    assert example["output"] - set(example["not_ours"]) <= _set_fields(config.output[0])
    # the same value kinds as the examples: TYPE_FP32 enums, dims without the batch axis, max_batch_size > 0
    assert config.input[0].data_type == pb.TYPE_FP32 and config.output[0].data_type == pb.TYPE_FP32
    assert list(config.input[0].dims) == [3, 8, 8] and list(config.output[0].dims) == [10]
    assert config.max_batch_size > 0


# -- validator: one negative test per check ----------------------------------------------------------
def _spec(**kw) -> cfg.ModelSpec:
    base = dict(name="m", platform="onnxruntime_onnx", max_batch_size=8,
                inputs=[cfg.TensorSpec("images", "float32", [3, 8, 8])], outputs=[cfg.TensorSpec("logits", "float32", [10])])
    base.update(kw)
    return cfg.ModelSpec(**base)


def _model_dir(tmp_path: Path, files=("1/model.onnx",), labels: int | None = None) -> Path:
    folder = tmp_path / "m"
    for f in files:
        (folder / f).parent.mkdir(parents=True, exist_ok=True)
        (folder / f).write_bytes(b"x")
    if labels is not None:
        (folder / "labels.txt").write_text("".join(f"c{i}\n" for i in range(labels)))
    return folder


def test_valid_config_passes(tmp_path):
    folder = _model_dir(tmp_path, labels=10)
    spec = _spec(dynamic_batching=True, preferred_batch_sizes=[4, 8], outputs=[cfg.TensorSpec("logits", "float32", [10], "labels.txt")])
    cfg.validate(cfg.parse(cfg.render(cfg.build(spec))), folder, num_classes=10)


@pytest.mark.parametrize("case, message", [
    ("preferred_over_max", "preferred batch sizes"),
    ("dynamic_at_zero", "dynamic_batching needs max_batch_size > 0"),
    ("ensemble_instances", "an ensemble takes no instance_group"),
    ("ensemble_unknown_step", "not in the repository"),
    ("label_lines", "has 9 lines for 10 classes"),
    ("label_missing", "label file"),
    ("model_file_missing", "model.onnx is missing"),
    ("python_artifact_missing", "model.onnx is missing"),
    ("negative_batch", "max_batch_size must be >= 0"),
    ("no_platform", "neither platform nor backend"),
    ("runner_artifact_missing", "the artifact .* is missing"),
])
def test_each_validator_check_fails_alone(tmp_path, case, message):
    files, labels, num_classes, known = ("1/model.onnx",), None, None, ()
    out_labels = [cfg.TensorSpec("logits", "float32", [10], "labels.txt")]
    spec = {
        "preferred_over_max": lambda: _spec(dynamic_batching=True, preferred_batch_sizes=[16]),
        "dynamic_at_zero": lambda: _spec(max_batch_size=0, dynamic_batching=True),
        "ensemble_instances": lambda: _spec(platform="ensemble", instance_kind="KIND_CPU"),
        "ensemble_unknown_step": lambda: _spec(platform="ensemble", instance_kind=None,
                                               steps=[cfg.EnsembleStep("ghost", {"images": "images"}, {"logits": "logits"})]),
        "label_lines": lambda: _spec(outputs=out_labels),
        "label_missing": lambda: _spec(outputs=out_labels),
        "model_file_missing": lambda: _spec(),
        "python_artifact_missing": lambda: _spec(platform=None, backend="python", parameters={"artifact_file": "model.onnx"}),
        "negative_batch": lambda: _spec(max_batch_size=-1),
        "no_platform": lambda: _spec(platform=None),
        "runner_artifact_missing": lambda: _spec(platform=None, backend="python",
                                                 parameters={"artifact_path": str(tmp_path / "gone.onnx")}),
    }[case]()
    if case == "label_lines":
        labels, num_classes = 9, 10
    if case == "ensemble_unknown_step":
        known = ("m",)
    if case == "model_file_missing":
        files = ("1/other.onnx",)
    if case in ("python_artifact_missing", "runner_artifact_missing"):
        files = ("1/model.py",)
    folder = _model_dir(tmp_path, files, labels)
    config = cfg.parse(cfg.render(cfg.build(spec)))
    with pytest.raises(AcmixError, match=message):
        cfg.validate(config, folder, num_classes=num_classes, known_models=known)


def test_unparsable_config_is_one_line():
    with pytest.raises(AcmixError, match="does not parse as a Triton ModelConfig") as info:
        cfg.parse('name: "m"\nmax_batch_size: "eight"\n')
    assert "\n" not in str(info.value)


def test_unknown_instance_kind_and_dtype_are_refused():
    with pytest.raises(AcmixError, match="instance kind"):
        cfg.build(_spec(instance_kind="KIND_TPU"))
    with pytest.raises(AcmixError, match="data type"):
        cfg.build(_spec(inputs=[cfg.TensorSpec("x", "complex64", [2])]))


# -- atomic write -----------------------------------------------------------------------------------
def test_failed_write_leaves_nothing_and_modes_follow_umask(tmp_path):
    good = small_onnx(tmp_path / "good.onnx", classes=CLASSES)
    bad = small_onnx(tmp_path / "bad.onnx", classes=CLASSES[:9], name="other")  # 9 names for 10 logits
    out = tmp_path / "out" / "repo"
    with pytest.raises(AcmixError, match="9 lines for 10 classes"):
        triton_repo([good, bad], out)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temporary folder left either
    old = os.umask(0o027)
    try:
        triton_repo([good], out)
    finally:
        os.umask(old)
    assert (out.stat().st_mode & 0o777) == 0o750
    assert (out / "tiny_net" / "config.pbtxt").stat().st_mode & 0o777 == 0o640
    assert (out / "tiny_net" / "1" / "model.onnx").stat().st_mode & 0o777 == 0o640
    with pytest.raises(AcmixError, match="not empty; pass --force"):
        triton_repo([good], out)
    triton_repo([good], out, RepoOptions(force=True, max_batch_size=2))
    assert _config(out, "tiny_net").max_batch_size == 2
    assert sorted(p.name for p in out.parent.iterdir()) == ["repo"]


def test_cli_triton_repo(tmp_path, capsys):
    from acmix_deploy.cli import main

    onnx_file = small_onnx(tmp_path / "m.onnx", classes=CLASSES)
    with pytest.raises(SystemExit) as ok:
        main(["triton-repo", str(onnx_file), "-o", str(tmp_path / "repo"), "--backend", "python", "--ensemble",
              "--max-batch-size", "4", "--preferred-batch-size", "2,4", "--instance-kind", "cpu"])
    assert ok.value.code == 0
    out = capsys.readouterr().out
    assert "tiny_net_classify" in out
    config = _config(tmp_path / "repo", "tiny_net")
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    with pytest.raises(SystemExit) as info:
        main(["triton-repo", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "r2")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "does not exist" in err and "\n" not in err


def test_missing_serve_extra_is_one_line(monkeypatch):
    import importlib.util
    import sys

    from acmix_deploy.serve import server

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pytriton" else real(name, *a))
    with pytest.raises(AcmixError, match=r"pip install 'acmix-deploy\[serve\]' \(nvidia-pytriton wheels exist for Linux x86_64"):
        server.find_bundle()
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)
    with pytest.raises(AcmixError, match=r"need tritonclient: pip install 'acmix-deploy\[serve\]'"):
        cfg.model_config_pb2()


def test_cli_triton_repo_takes_the_newest_workspace_artifact(tmp_path, capsys):
    from acmix_deploy import workspace as ws
    from acmix_deploy.cli import main

    older = small_onnx(tmp_path / "older.onnx", name="older_net")
    newer = small_onnx(tmp_path / "newer.onnx", name="newer_net")
    ws.record(ws.ONNX, "older_net", older, workspace=tmp_path / "ws")
    ws.record(ws.ONNX_FP16, "newer_net", newer, workspace=tmp_path / "ws")
    with pytest.raises(SystemExit) as ok:
        main(["triton-repo", "--workspace", str(tmp_path / "ws"), "-o", str(tmp_path / "repo")])
    assert ok.value.code == 0
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["newer_net"]


def test_serve_runner_repository_accepts_rtx_engines(tmp_path):
    """`serve ENGINE` runs engines through the toolkit's runner, which handles TensorRT-RTX too: the
    refusal is only for Triton's tensorrt_plan backend (triton-repo)."""
    from acmix_deploy.serve.repository import runner_repository

    engine = write_engine_with_sidecar(tmp_path / "rtx.engine", flavour="tensorrt-rtx")
    result = runner_repository(engine, tmp_path / "repo", "tensorrt", "tiny_net", 8, 100, None)
    config = _config(result.root, "tiny_net")
    assert config.backend == "python" and config.max_batch_size == 16  # the engine's profile decides
    assert config.parameters["runner"].string_value == "tensorrt"
    assert config.parameters["artifact_path"].string_value == str(engine.resolve())
