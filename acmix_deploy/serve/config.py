"""Triton model configs: built as tritonclient's ModelConfig protobuf, rendered, parsed, validated.

Building through the protobuf (not string templates) means every field name and enum value is
checked by the same schema Triton uses. `validate` then checks what a parse cannot see: batch
limits against dynamic batching, ensembles without instance groups, label files with one line per
class, and every file the config refers to. Each check has its own one-line error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acmix_deploy.errors import AcmixError
from acmix_deploy.serve import SERVE_EXTRA_HINT

# numpy dtype name -> Triton data type
TRITON_TYPES = {
    "float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32",
    "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL", "bytes": "TYPE_STRING", "object": "TYPE_STRING",
}
PLATFORMS = ("onnxruntime_onnx", "tensorrt_plan", "ensemble")
DEFAULT_FILES = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan", "python": "model.py"}
INSTANCE_KINDS = ("KIND_AUTO", "KIND_CPU", "KIND_GPU")


def model_config_pb2() -> Any:
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise AcmixError(f"Triton configs need tritonclient: {SERVE_EXTRA_HINT}") from None
    return model_config_pb2


@dataclass
class TensorSpec:
    """One input or output; `dims` exclude the batch axis when max_batch_size > 0."""

    name: str
    dtype: str  # numpy name, see TRITON_TYPES
    dims: list[int]
    label_filename: str | None = None


@dataclass
class EnsembleStep:
    model_name: str
    input_map: dict[str, str]  # step model's input -> ensemble tensor
    output_map: dict[str, str]  # step model's output -> ensemble tensor


@dataclass
class ModelSpec:
    """Everything a config.pbtxt says, in the toolkit's terms."""

    name: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_batch_size: int = 0
    platform: str | None = None  # onnxruntime_onnx | tensorrt_plan | ensemble
    backend: str | None = None  # python
    dynamic_batching: bool = False
    queue_delay_us: int = 0
    preferred_batch_sizes: list[int] = field(default_factory=list)
    instance_kind: str | None = "KIND_AUTO"  # None: no instance_group (ensembles)
    instance_count: int = 1
    default_model_filename: str | None = None
    cc_model_filenames: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    steps: list[EnsembleStep] = field(default_factory=list)


def _tensor(message: Any, spec: TensorSpec, pb: Any, output: bool) -> None:
    message.name = spec.name
    try:
        message.data_type = pb.DataType.Value(TRITON_TYPES[spec.dtype])
    except KeyError:
        raise AcmixError(f"tensor {spec.name!r} has a data type Triton configs cannot express: {spec.dtype}") from None
    message.dims.extend(int(d) for d in spec.dims)
    if output and spec.label_filename:
        message.label_filename = spec.label_filename


def build(spec: ModelSpec) -> Any:
    """The ModelConfig protobuf for `spec`."""
    pb = model_config_pb2()
    config = pb.ModelConfig(name=spec.name, max_batch_size=int(spec.max_batch_size))
    if spec.platform:
        config.platform = spec.platform
    if spec.backend:
        config.backend = spec.backend
    for t in spec.inputs:
        _tensor(config.input.add(), t, pb, output=False)
    for t in spec.outputs:
        _tensor(config.output.add(), t, pb, output=True)
    if spec.dynamic_batching:
        config.dynamic_batching.max_queue_delay_microseconds = int(spec.queue_delay_us)
        config.dynamic_batching.preferred_batch_size.extend(spec.preferred_batch_sizes)
    if spec.instance_kind is not None:
        if spec.instance_kind not in INSTANCE_KINDS:
            raise AcmixError(f"instance kind must be one of {', '.join(INSTANCE_KINDS)}, got {spec.instance_kind!r}")
        config.instance_group.add(kind=pb.ModelInstanceGroup.Kind.Value(spec.instance_kind), count=spec.instance_count)
    if spec.default_model_filename:
        config.default_model_filename = spec.default_model_filename
    for cc, filename in spec.cc_model_filenames.items():
        config.cc_model_filenames[cc] = filename
    for key, value in spec.parameters.items():
        config.parameters[key].string_value = str(value)
    for step in spec.steps:
        s = config.ensemble_scheduling.step.add(model_name=step.model_name, model_version=-1)
        s.input_map.update(step.input_map)
        s.output_map.update(step.output_map)
    return config


def render(config: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def parse(text: str, where: str = "config.pbtxt") -> Any:
    """Parse config.pbtxt text with the ModelConfig schema; a parse error is one line."""
    from google.protobuf import text_format

    pb = model_config_pb2()
    try:
        return text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as exc:
        raise AcmixError(f"{where} does not parse as a Triton ModelConfig: {exc}") from None


def _model_files(config: Any) -> list[str]:
    """Files inside the version folder that Triton will open for this config."""
    if config.platform == "ensemble":
        return []
    kind = config.backend if config.backend == "python" else config.platform
    files = [config.default_model_filename or DEFAULT_FILES.get(kind, "model.onnx")]
    if config.cc_model_filenames:
        files = list(config.cc_model_filenames.values())
    if "artifact_file" in config.parameters:  # the ONNX file a python-backend model opens
        files.append(config.parameters["artifact_file"].string_value)
    return files


def validate(config: Any, model_dir: Path | None = None, num_classes: int | None = None,
             known_models: Sequence[str] = ()) -> None:
    """Checks a protobuf parse cannot make; raises AcmixError naming the model and the rule."""
    where = f"model {config.name!r}"
    mbs = config.max_batch_size
    if mbs < 0:
        raise AcmixError(f"{where}: max_batch_size must be >= 0, got {mbs}")
    if config.HasField("dynamic_batching"):
        if mbs == 0:
            raise AcmixError(f"{where}: dynamic_batching needs max_batch_size > 0 (a batch-1 static model cannot batch)")
        too_big = [b for b in config.dynamic_batching.preferred_batch_size if b > mbs or b < 1]
        if too_big:
            raise AcmixError(f"{where}: preferred batch sizes {too_big} are outside 1..max_batch_size {mbs}")
    if config.platform == "ensemble":
        if len(config.instance_group):
            raise AcmixError(f"{where}: an ensemble takes no instance_group (its steps have their own)")
        missing = [s.model_name for s in config.ensemble_scheduling.step if known_models and s.model_name not in known_models]
        if missing:
            raise AcmixError(f"{where}: ensemble steps name models not in the repository: {missing}")
    elif not config.platform and not config.backend:
        raise AcmixError(f"{where}: neither platform nor backend is set")
    if not len(config.input) or not len(config.output):
        raise AcmixError(f"{where}: a model needs at least one input and one output")
    if model_dir is not None:
        _validate_files(config, Path(model_dir), num_classes, where)


def _validate_files(config: Any, model_dir: Path, num_classes: int | None, where: str) -> None:
    for filename in _model_files(config):
        if not (model_dir / "1" / filename).is_file():
            raise AcmixError(f"{where}: {model_dir / '1' / filename} is missing")
    if "artifact_path" in config.parameters:  # the artifact a runner model opens where it lies
        artifact = Path(config.parameters["artifact_path"].string_value)
        if not artifact.is_file():
            raise AcmixError(f"{where}: the artifact {artifact} is missing")
    for out in config.output:
        if not out.label_filename:
            continue
        label_file = model_dir / out.label_filename
        if not label_file.is_file():
            raise AcmixError(f"{where}: label file {label_file} is missing")
        lines = label_file.read_text().splitlines()
        for expected in (num_classes, out.dims[-1] if len(out.dims) and out.dims[-1] > 0 else None):
            if expected is not None and len(lines) != expected:
                raise AcmixError(f"{where}: label file {label_file.name} has {len(lines)} lines for {expected} classes")
