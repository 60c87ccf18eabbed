"""int8 ONNX for strongly typed TensorRT: explicit QuantizeLinear / DequantizeLinear pairs.

onnxruntime.quantization.quantize_static in QDQ format with what TensorRT's parser accepts and
fuses: symmetric int8 activations and weights (zero point 0), per-channel weights, biases left in
float (QuantizeBias=False; the default int32 bias DequantizeLinear is rejected by the parser), and
Q/DQ only on the *inputs* of the quantized ops (OpTypesToExcludeOutputQuantization), which is
where TensorRT wants them.

Which nodes are quantized is the "split":
* ``no-grouped``: Conv / MatMul / Gemm with a constant weight that are not grouped convs: stage I
  (q/k/v or the fused qkv), the conv path's fc, the plain convs and linears, the classifier.
  Excluded: the attention math (MatMul of two activations, anything under an ``attention``
  module path) and grouped convs (dep_conv: 9 or 3*heads channels per group), which stay in float.
* ``keep-ends`` (default): no-grouped, and the first conv (3 input channels: little int8 gain)
  and the logits producer stay in float too.
* ``no-attention``: only the attention math stays in float (grouped convs are quantized).
* ``all``: every Conv / MatMul / Gemm.
scripts/int8_split_study.py measures them (README "Precision" has the numbers for seeds 0-2): keep-ends
was clearly best on one seed, tied on one, and within 0.9 points of top-1 agreement of the best on the
third; entropy calibration was the least consistent.

The float parts ("rest") are then cast to fp16 by default, with the same block list and range
guard as `fp16.py` (Softmax, reductions, LayerNorm, logits in fp32; Q/DQ scales become fp16, so
the default opset is raised to 19, where that is valid): strongly typed TensorRT would otherwise run the
attention math and dep_conv in fp32. ``rest="fp32"`` keeps them fp32.
"""

from __future__ import annotations

from collections.abc import Callable

import contextlib
import io
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from acmix_deploy import workspace as ws
from acmix_deploy.errors import AcmixError
from acmix_deploy.precision import calib
from acmix_deploy.precision.int8_options import DEFAULT_METHOD, DEFAULT_SPLIT, Method, Split
from acmix_deploy.precision.fp16 import _Index, _is_constant, output_producers, plan_fp16, to_fp16
from acmix_deploy.onnxio import input_info, load_model, load_source, save_model, write_verified
from acmix_deploy.parity import ParityResult, judge
from acmix_deploy.precision.verify import compare_models

QUANT_OPS = ("Conv", "MatMul", "Gemm")
SPLITS = tuple(s.value for s in Split)
METHODS = tuple(m.value for m in Method)
_ATTENTION_PATH = re.compile(r"(^|[./])attention([./_]|$)")


@dataclass
class Int8Plan:
    quantize: list[str]
    exclude: dict[str, str]  # node name -> reason


@dataclass
class Int8Result:
    path: Path | None
    model: str
    report: ParityResult
    plan: Int8Plan
    method: str
    split: str
    calib_count: int
    calib_source: str
    rest: str = "fp16"

    def lines(self) -> list[str]:
        reasons: dict[str, int] = {}
        for why in self.plan.exclude.values():
            reasons[why] = reasons.get(why, 0) + 1
        kept = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items())) or "none"
        return [
            f"quantized {len(self.plan.quantize)} Conv/MatMul/Gemm nodes (split {self.split}); "
            f"kept in float ({self.rest}): {kept}",
            f"calibration: {self.calib_count} inputs from {self.calib_source}, method {self.method}",
            self.report.line(),
        ]


def _conv_group(node: onnx.NodeProto) -> int:
    for attr in node.attribute:
        if attr.name == "group":
            return int(attr.i)
    return 1


def _weight_input(idx: _Index, node: onnx.NodeProto) -> bool:
    """Whether the node's second input is a constant (a weight), possibly behind a Transpose."""
    if len(node.input) < 2:
        return False
    name = node.input[1]
    prod = idx.producer.get(name)
    while prod is not None and prod.op_type in ("Transpose", "Reshape", "Identity", "Cast"):
        name = prod.input[0]
        prod = idx.producer.get(name)
    return _is_constant(idx, name)


def plan_int8(model: onnx.ModelProto, split: str = DEFAULT_SPLIT) -> Int8Plan:
    """Choose the nodes to quantize (see the module docstring)."""
    if split not in SPLITS:
        raise AcmixError(f"unknown int8 split {split!r}; choose one of {', '.join(SPLITS)}")
    idx = _Index(model.graph)
    inputs = {i.name for i in model.graph.input}
    outputs = output_producers(model)
    quantize: list[str] = []
    exclude: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type not in QUANT_OPS:
            continue
        reason = None
        if split != "all":
            if node.op_type in ("MatMul", "Gemm") and not _weight_input(idx, node):
                reason = "attention MatMul (two activations)"
            elif _ATTENTION_PATH.search(node.name):
                reason = "attention path"
            elif split in ("no-grouped", "keep-ends") and node.op_type == "Conv" and _conv_group(node) > 1:
                reason = "grouped conv (dep_conv)"
            elif split == "keep-ends" and (node.name in outputs or any(i in inputs for i in node.input)):
                reason = "first / last layer"
        if reason:
            exclude[node.name] = reason
        else:
            quantize.append(node.name)
    if not quantize:
        raise AcmixError("nothing to quantize: the model has no Conv/MatMul/Gemm with constant weights")
    return Int8Plan(quantize=quantize, exclude=exclude)


class _Reader:
    """onnxruntime CalibrationDataReader over an in-memory array, in batches."""

    def __init__(self, name: str, data: np.ndarray, batch: int):
        self._batches = [data[i : i + batch] for i in range(0, len(data), batch)]
        self._name = name
        self._it = iter(self._batches)

    def get_next(self):
        part = next(self._it, None)
        return None if part is None else {self._name: np.ascontiguousarray(part)}

    def rewind(self):
        self._it = iter(self._batches)

    @classmethod
    def single(cls, feed: dict[str, np.ndarray]) -> "_Reader":
        """A reader over one ready feed."""
        ((name, data),) = feed.items()
        return cls(name, data, len(data))


@contextlib.contextmanager
def _quiet_ort_quantization():
    """Silence onnxruntime.quantization's chatter: its "consider pre-processing" warning (we run shape
    inference ourselves) and the calibrators' progress prints."""

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "pre-process" not in record.getMessage() and "pre-processing" not in record.getMessage()

    root = logging.getLogger()
    flt = _Drop()
    root.addFilter(flt)
    try:  # the calibrators also print progress to stdout
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeFilter(flt)


# Histogram settings for the entropy / percentile calibrators. quantize_static's own entropy
# default (128 bins for 128 quantized bins) leaves the KL search a single candidate, the full
# range, i.e. it silently equals min-max; 1024 bins give it 449 thresholds to choose from.
ENTROPY_BINS = 1024
PERCENTILE_BINS = 2048


def _calibrate(model_path: Path, tmp: Path, reader: _Reader, method: str, percentile: float):
    """Activation ranges with onnxruntime's calibrators, configured beyond quantize_static's defaults."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    options: dict = {"symmetric": True}
    if method == "entropy":
        options.update(num_bins=ENTROPY_BINS, num_quantized_bins=128)
    elif method == "percentile":
        options.update(num_bins=PERCENTILE_BINS, percentile=percentile)
    calibrator = create_calibrator(
        model_path,
        list(QUANT_OPS),
        augmented_model_path=str(tmp / "augmented.onnx"),
        calibrate_method=_METHODS[method](CalibrationMethod),
        extra_options=options,
    )
    # one batch per collect_data call: the histogram calibrators keep every intermediate output of a
    # call in memory before binning it (256 ResNet-50 inputs at 224 px in one call were OOM-killed at
    # 24 GB; one batch per call peaked at 4 GB), and merge each call into their running histograms / ranges
    while (batch := reader.get_next()) is not None:
        calibrator.collect_data(_Reader.single(batch))
    return calibrator.compute_data()


_METHODS = {
    "minmax": lambda cm: cm.MinMax,
    "entropy": lambda cm: cm.Entropy,
    "percentile": lambda cm: cm.Percentile,
}


def _quantize(
    model: onnx.ModelProto, plan: Int8Plan, calib_x: np.ndarray, method: str, percentile: float
) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static, save_tensors_data

    in_name, dims = input_info(model)
    batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else 8
    if isinstance(dims[0], int) and dims[0] > 0 and len(calib_x) % batch:
        keep = len(calib_x) - len(calib_x) % batch
        if keep == 0:
            raise AcmixError(f"need at least {batch} calibration inputs for this static-batch model")
        calib_x = calib_x[:keep]
    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        "OpTypesToExcludeOutputQuantization": list(QUANT_OPS),
    }
    prepared = onnx.shape_inference.infer_shapes(model)
    with tempfile.TemporaryDirectory(prefix="acmix-int8-") as tmp_name:
        tmp = Path(tmp_name)
        src, dst, ranges = tmp / "fp32.onnx", tmp / "int8.onnx", tmp / "ranges.json"
        save_model(prepared, src)
        with _quiet_ort_quantization():
            save_tensors_data(_calibrate(src, tmp, _Reader(in_name, calib_x, batch), method, percentile), ranges)
            quantize_static(
                str(src),
                str(dst),
                None,
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=list(QUANT_OPS),
                nodes_to_quantize=plan.quantize,
                nodes_to_exclude=list(plan.exclude),
                calibrate_method=_METHODS[method](CalibrationMethod),
                extra_options=extra,
                calibration_cache_path=ranges,
            )
        return load_model(dst)


def _fp16_rest_plan(model: onnx.ModelProto, samples: np.ndarray):
    """fp16.py's plan, plus: a quantized node kept fp32 (the logits producer) keeps its Q/DQ in fp32
    too, so it reads DequantizeLinear directly (the pattern TensorRT fuses) rather than through a Cast."""
    plan = plan_fp16(model, samples)
    idx = _Index(model.graph)
    fp32_ops = set(plan.op_block_list)
    for node in list(model.graph.node):
        if node.name not in plan.node_block and node.op_type not in fp32_ops:
            continue
        for tensor in node.input:
            dq = idx.prod(tensor, "DequantizeLinear")
            if dq is None:
                continue
            plan.node_block.setdefault(dq.name, f"Q/DQ feeding fp32 node {node.name}")
            q = idx.prod(dq.input[0], "QuantizeLinear")
            if q is not None:
                plan.node_block.setdefault(q.name, f"Q/DQ feeding fp32 node {node.name}")
    return plan


QDQ_FP16_OPSET = 19


def _with_fp16_qdq_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """Raise the default-domain opset to 19, where Q/DQ scales may be fp16 and DequantizeLinear then
    outputs fp16: the form strongly typed TensorRT fuses into an fp16/int8 conv (opset 18 scales must
    be fp32, which would leave fp32 DQ outputs and Casts between DQ and the conv). The ops of the
    exported graphs gained only new types / attributes with defaults from 18 to 19."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version < QDQ_FP16_OPSET:
            imp.version = QDQ_FP16_OPSET
    return model


def check_trt_qdq(model: onnx.ModelProto) -> None:
    """TensorRT's parser needs int8 DequantizeLinear inputs with zero points of 0 (no int32 biases)."""
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            dtype = inits[node.input[0]].data_type
            if dtype != TensorProto.INT8:
                raise AcmixError(
                    f"{node.name} dequantizes {TensorProto.DataType.Name(dtype)} data, which TensorRT rejects"
                )
        if len(node.input) > 2 and node.input[2] in inits:
            zp = onnx.numpy_helper.to_array(inits[node.input[2]])
            if np.any(zp != 0):
                raise AcmixError(f"{node.name} has a non-zero zero point; TensorRT needs symmetric int8")


RANDOM_CALIB_MAX = 32


def quantize_int8(
    onnx_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    calib_data: str | os.PathLike[str] = calib.RANDOM,
    calib_size: int = 256,
    method: str = DEFAULT_METHOD,
    min_agreement: float = 0.97,
    split: str = DEFAULT_SPLIT,
    holdout: int = 128,
    percentile: float = 99.999,
    rest: str = "fp16",
    model: str | None = None,
    workspace: str | os.PathLike[str] | None = None,
    record: bool = True,
    seed: int = 0,
    log: Callable[[str], object] | None = None,
) -> Int8Result:
    """fp32 ONNX -> verified int8 Q/DQ ONNX. ParityError (nothing written) below `min_agreement`
    top-1 agreement on held-out real images; with random data the numbers are reported, not gated.
    `rest` ("fp16" | "fp32") is the precision of what is not quantized; `log` hears each phase.
    """
    log = log or (lambda _m: None)
    if rest not in ("fp16", "fp32"):
        raise AcmixError(f"--rest must be fp16 or fp32, got {rest!r}")
    if method not in _METHODS:
        raise AcmixError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    if calib_size < 1 or holdout < 1:
        raise AcmixError("--calib-size and the held-out count must be at least 1")
    from acmix_deploy.workspace import check_output

    src, name = load_source(onnx_path, model)
    check_output(onnx_path, output, name, ".int8.onnx", workspace, record, calib_data)
    plan = plan_int8(src, split)  # before the (slow) image loading: a bad split fails at once
    log(f"loading calibration and held-out inputs from {calib_data}")
    # Random calibration only shows that the graph quantizes and builds; its ranges and agreement
    # mean nothing, so more than a few dozen inputs would only cost minutes (256 ResNet-50 inputs at
    # 224 px took ~8 min): random data is capped at RANDOM_CALIB_MAX inputs per set.
    inputs = calib.load_split(src, calib_data, calib_size, holdout, seed, random_count=RANDOM_CALIB_MAX)
    calib_x, total = inputs.calib, inputs.total
    if total is None:
        source = f"random noise ({len(calib_x)} inputs: at most {RANDOM_CALIB_MAX} for random data)"
    else:
        source = f"{calib_data} ({inputs.pre.describe()}, from {inputs.pre.source})"
    log(f"calibrating {method} ranges on {len(calib_x)} inputs and inserting Q/DQ (split {split})")
    q = _quantize(src, plan, calib_x, method, percentile)
    check_trt_qdq(q)
    if rest == "fp16":
        log("converting what is not quantized to fp16")
        q = to_fp16(_with_fp16_qdq_opset(q), _fp16_rest_plan(q, calib_x[:16]))
    log(f"verifying against fp32 on {len(inputs.holdout)} held-out inputs")
    ref, cand = compare_models(src.SerializeToString(), q.SerializeToString(), inputs.holdout)
    meaningful = total is not None
    report = judge(
        ref,
        cand,
        "int8 vs fp32",
        f"top-1 agreement >= {min_agreement:g}" if meaningful else "none (random calibration data)",
        (lambda r: r.top1_agreement >= min_agreement) if meaningful else (lambda r: True),
        meaningful=meaningful,
    )
    result = Int8Result(None, name, report, plan, method, split, len(calib_x), source, rest)
    # carry over the source's metadata (preprocessing, model card) that the transforms did not keep
    q.metadata_props.extend(p for p in src.metadata_props if p.key not in {m.key for m in q.metadata_props})
    result.path = write_verified(
        q, report, source=onnx_path, output=output, name=name, suffix=".int8.onnx",
        metadata={"precision": "int8", "int8_method": method, "int8_split": split, "int8_rest": rest},
        kind=ws.ONNX_INT8,
        info={"method": method, "split": split, "rest": rest, "top1_agreement": report.top1_agreement,
              "cosine": report.cosine, "calibration": source},
        workspace=workspace, record=record,
    )
    return result
