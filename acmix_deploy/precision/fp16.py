"""fp16 ONNX for strongly typed TensorRT: weights and activations in fp16, sensitive ops in fp32.

Kept fp32 (an explicit block list; onnxconverter-common's default list has none of these):
* Softmax / LogSoftmax and reductions (ReduceMean/Sum/..., Exp, Log), LayerNormalization and the
  other normalisation ops, Pow / Sqrt, and the decomposed forms: LayerNorm written as
  ReduceMean -> Sub -> Pow -> ReduceMean -> Add(eps) -> Sqrt -> Div, softmax written as
  ReduceMax -> Sub -> Exp -> ReduceSum -> Div;
* the node producing each graph output (the logits);
* every node whose fp32 activation (measured in ONNX Runtime on sample inputs) exceeds
  65504 / margin, and the consumers of such tensors: ONNX Runtime's CPU provider computes many fp16
  nodes in fp32, so an fp16 overflow would not show in the parity check;
* consumers of constants beyond the fp16 range.

onnxconverter-common clamps constants to +-1e4 by default; we pass fp16's own limits instead
(65504, 2**-24), so a value is only changed where fp16 cannot represent it, and report how many
constants the default would have clamped. The converter also rounds the weights of blocked nodes
to fp16 and casts them back, and turns a blocked output producer's output into fp16 despite
keep_io_types; `_tidy` restores the fp32 constants and the fp32 outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import os
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from acmix_deploy import workspace as ws
from acmix_deploy.errors import AcmixError
from acmix_deploy.precision import calib, typefix
from acmix_deploy.onnxio import load_source, write_verified
from acmix_deploy.parity import ParityResult, judge
from acmix_deploy.precision.verify import compare_models
from acmix_deploy.runners import OnnxRuntimeRunner, padded_chunks

FP16_MAX = 65504.0
FP16_MIN_SUBNORMAL = 2.0**-24
CONVERTER_DEFAULT_CLAMP = 1e4
DEFAULT_MARGIN = 4.0

SENSITIVE_OPS = (
    "Softmax",
    "LogSoftmax",
    "LayerNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceProd",
    "Pow",
    "Sqrt",
    "Exp",
    "Log",
)
# ops that only move data: walk through them to find the node that computes an output
_DATA_MOVEMENT = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Cast"}


@dataclass
class Fp16Plan:
    """What stays fp32, and why (node name -> reason)."""

    op_block_list: list[str]
    node_block: dict[str, str]
    activation_absmax: dict[str, float] = field(default_factory=dict)
    constants_over_default_clamp: int = 0  # values the converter's default +-1e4 clamp would change
    constants_beyond_fp16: int = 0  # values fp16 cannot hold (their consumers are blocked)
    margin: float = DEFAULT_MARGIN  # activations above FP16_MAX / margin were kept fp32


@dataclass
class Fp16Result:
    path: Path | None
    model: str
    report: ParityResult
    plan: Fp16Plan
    blocked_nodes: int
    total_nodes: int

    def lines(self) -> list[str]:
        p = self.plan
        big = [t for t, v in p.activation_absmax.items() if v > FP16_MAX / p.margin]
        peak = max(p.activation_absmax.values(), default=0.0)
        return [
            f"kept fp32: {self.blocked_nodes} of {self.total_nodes} nodes "
            f"(sensitive ops, decomposed LayerNorm/softmax, output producers, range)",
            f"activation range (fp32 run): max |x| {peak:.4g}; {len(big)} tensors above 65504/{p.margin:g}",
            f"constants: {p.constants_over_default_clamp} values above 1e4 kept exact (the converter's default "
            f"would clamp them), {p.constants_beyond_fp16} beyond fp16 range kept fp32",
            self.report.line(),
        ]


# ----------------------------------------------------------------------------------------- graph


class _Index:
    """Producer / consumer maps of a graph."""

    def __init__(self, graph: onnx.GraphProto):
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
        self.initializers = {i.name for i in graph.initializer}

    def prod(self, tensor: str, op: str | tuple[str, ...]) -> onnx.NodeProto | None:
        node = self.producer.get(tensor)
        ops = (op,) if isinstance(op, str) else op
        return node if node is not None and node.op_type in ops else None


def _is_constant(idx: _Index, tensor: str) -> bool:
    return tensor in idx.initializers or (tensor in idx.producer and idx.producer[tensor].op_type == "Constant")


def decomposed_norm_nodes(model: onnx.ModelProto) -> dict[str, str]:
    """Nodes of LayerNorm / softmax written out as elementwise ops (they must stay fp32 together)."""
    idx = _Index(model.graph)
    found: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type == "Sqrt":  # ... -> ReduceMean(var) -> [Add eps] -> Sqrt -> Div / Reciprocal
            chain = [node]
            src = node.input[0]
            add = idx.prod(src, "Add")
            if add is not None:
                chain.append(add)
                src = next((i for i in add.input if not _is_constant(idx, i)), add.input[0])
            var = idx.prod(src, "ReduceMean")
            if var is None:
                continue
            chain.append(var)
            sq = idx.prod(var.input[0], ("Pow", "Mul"))
            if sq is not None:
                chain.append(sq)
                sub = idx.prod(sq.input[0], "Sub")
                if sub is not None:
                    chain.append(sub)
                    mean = idx.prod(sub.input[1], "ReduceMean")
                    if mean is not None:
                        chain.append(mean)
                    chain.extend(c for c in idx.consumers[sub.output[0]] if c.op_type in ("Div", "Mul"))
            for c in idx.consumers[node.output[0]]:
                if c.op_type in ("Div", "Reciprocal"):
                    chain.append(c)
                    if c.op_type == "Reciprocal":
                        chain.extend(m for m in idx.consumers[c.output[0]] if m.op_type == "Mul")
            for n in chain:
                found.setdefault(n.name, "decomposed LayerNorm")
        elif node.op_type == "Exp":  # [ReduceMax -> Sub] -> Exp -> ReduceSum -> Div
            sums = [c for c in idx.consumers[node.output[0]] if c.op_type == "ReduceSum"]
            if not sums:
                continue
            chain = [node, *sums]
            for c in idx.consumers[node.output[0]]:
                if c.op_type == "Div" and any(s.output[0] in c.input for s in sums):
                    chain.append(c)
            sub = idx.prod(node.input[0], "Sub")
            if sub is not None:
                chain.append(sub)
                rmax = idx.prod(sub.input[1], "ReduceMax")
                if rmax is not None:
                    chain.append(rmax)
            for n in chain:
                found.setdefault(n.name, "decomposed softmax")
    return found


def output_producers(model: onnx.ModelProto) -> dict[str, str]:
    """The nodes that compute each graph output (walking back through reshapes and casts)."""
    idx = _Index(model.graph)
    found: dict[str, str] = {}
    for out in model.graph.output:
        tensor = out.name
        while tensor in idx.producer:
            node = idx.producer[tensor]
            found.setdefault(node.name, f"produces graph output {out.name}")
            if node.op_type not in _DATA_MOVEMENT:
                break
            tensor = node.input[0]
    return found


def _float_value_infos(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    inferred = onnx.shape_inference.infer_shapes(model)
    return {
        vi.name: vi
        for vi in inferred.graph.value_info
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT
    }


def activation_absmax(model: onnx.ModelProto, inputs: np.ndarray) -> dict[str, float]:
    """max |x| of every fp32 intermediate tensor over `inputs` (ONNX Runtime, graph outputs added)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    infos = _float_value_infos(model)
    names = [n for node in probe.graph.node for n in node.output if n in infos and n not in existing]
    probe.graph.output.extend(infos[n] for n in names)
    absmax: dict[str, float] = {}
    with OnnxRuntimeRunner(probe.SerializeToString(), optimization="disable") as runner:
        lo, hi = runner.batch_limits()
        fixed = hi if lo == hi else None
        for part, _ in padded_chunks(inputs, fixed or 4, fixed):
            for name, value in runner.infer(np.ascontiguousarray(part)).items():
                arr = np.asarray(value)
                if arr.size and arr.dtype.kind == "f":
                    peak = float(np.max(np.abs(arr[np.isfinite(arr)]))) if np.isfinite(arr).any() else 0.0
                    absmax[name] = max(absmax.get(name, 0.0), peak)
    return absmax


def _constant_arrays(model: onnx.ModelProto):
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            yield init.name, numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                    yield node.output[0], numpy_helper.to_array(attr.t)


def plan_fp16(
    model: onnx.ModelProto,
    sample_inputs: np.ndarray | None,
    margin: float = DEFAULT_MARGIN,
    extra_block: dict[str, str] | None = None,
) -> Fp16Plan:
    """Decide what stays fp32 (see the module docstring)."""
    idx = _Index(model.graph)
    node_block: dict[str, str] = {}
    node_block.update(decomposed_norm_nodes(model))
    node_block.update(output_producers(model))
    if extra_block:
        node_block.update(extra_block)

    over_default = beyond = 0
    for name, arr in _constant_arrays(model):
        finite = np.abs(arr[np.isfinite(arr)])
        over_default += int((finite > CONVERTER_DEFAULT_CLAMP).sum())
        n_beyond = int((finite > FP16_MAX).sum())
        if n_beyond:
            beyond += n_beyond
            for c in idx.consumers[name]:
                node_block.setdefault(c.name, f"reads constant {name} beyond fp16 range")

    absmax: dict[str, float] = {}
    if sample_inputs is not None and len(sample_inputs):
        absmax = activation_absmax(model, sample_inputs)
        limit = FP16_MAX / margin
        for tensor, peak in absmax.items():
            if peak <= limit:
                continue
            reason = f"|{tensor}| reaches {peak:.4g} > 65504/{margin:g}"
            if tensor in idx.producer:
                node_block.setdefault(idx.producer[tensor].name, reason)
            for c in idx.consumers[tensor]:
                node_block.setdefault(c.name, reason)
        if float(np.abs(sample_inputs).max()) > limit:
            for inp in model.graph.input:
                for c in idx.consumers[inp.name]:
                    node_block.setdefault(c.name, "reads a graph input beyond the fp16 safety margin")
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST

    return Fp16Plan(
        # ours plus the converter's defaults (ops ONNX Runtime has no fp16 kernel for: Resize, TopK,
        # Range, Min/Max, ...), which an explicit op_block_list would otherwise replace
        op_block_list=list(dict.fromkeys([*SENSITIVE_OPS, *DEFAULT_OP_BLOCK_LIST])),
        node_block=node_block,
        activation_absmax=absmax,
        constants_over_default_clamp=over_default,
        constants_beyond_fp16=beyond,
        margin=margin,
    )


# ---------------------------------------------------------------------------------- conversion


def _cast_to(node: onnx.NodeProto) -> int | None:
    for attr in node.attribute:
        if attr.name == "to":
            return attr.i
    return None


def _tidy(converted: onnx.ModelProto, original: onnx.ModelProto) -> onnx.ModelProto:
    """Undo the converter's precision losses around fp32 islands (see the module docstring).

    1. Cast(fp16 constant -> fp32) becomes the original fp32 constant.
    2. Cast(x: fp32 -> fp16) -> Cast(-> fp32) pairs collapse to x.
    3. Graph outputs that were fp32 are fp32 again (keep_io_types), without an fp16 round trip.
    """
    graph = converted.graph
    originals = dict(_constant_arrays(original))
    types: dict[str, int] = {}
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in graph.initializer:
        types[init.name] = init.data_type
    idx = _Index(graph)

    def rewire(old: str, new: str) -> None:
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new

    removed: set[str] = set()
    restored: dict[str, str] = {}
    for node in list(graph.node):
        if node.op_type != "Cast" or _cast_to(node) != TensorProto.FLOAT:
            continue
        src = node.input[0]
        if src in originals and not any(o.name == node.output[0] for o in graph.output):
            if src not in restored:  # 1. restore the fp32 constant
                restored[src] = f"{src}__fp32"
                graph.initializer.append(numpy_helper.from_array(originals[src].astype(np.float32), restored[src]))
            rewire(node.output[0], restored[src])
            removed.add(node.name)
            continue
        up = idx.producer.get(src)
        if up is not None and up.op_type == "Cast" and _cast_to(up) == TensorProto.FLOAT16:
            if types.get(up.input[0]) == TensorProto.FLOAT and not any(o.name == node.output[0] for o in graph.output):
                rewire(node.output[0], up.input[0])  # 2. fp32 -> fp16 -> fp32 round trip
                removed.add(node.name)

    original_out = {o.name: o.type.tensor_type.elem_type for o in original.graph.output}
    for out in graph.output:  # 3. outputs back to fp32
        if original_out.get(out.name) != TensorProto.FLOAT or out.type.tensor_type.elem_type == TensorProto.FLOAT:
            continue
        prod = idx.producer.get(out.name)
        inner = prod.input[0] if prod is not None and prod.op_type == "Cast" else None
        inner_prod = idx.producer.get(inner) if inner else None
        if (
            inner_prod is not None
            and types.get(inner) == TensorProto.FLOAT
            and not idx.consumers[out.name]
            and len(idx.consumers[inner]) == 1
        ):  # the fp32 tensor takes the output's name; the fp16 cast goes
            inner_prod.output[list(inner_prod.output).index(inner)] = out.name
            removed.add(prod.name)
        else:
            renamed = f"{out.name}__fp16"
            if prod is not None:
                prod.output[list(prod.output).index(out.name)] = renamed
            rewire(out.name, renamed)
            graph.node.append(
                helper.make_node("Cast", [renamed], [out.name], to=TensorProto.FLOAT, name=f"{out.name}_to_fp32")
            )
        out.type.tensor_type.elem_type = TensorProto.FLOAT

    kept = [n for n in graph.node if n.name not in removed]
    del graph.node[:]
    graph.node.extend(kept)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    live = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    # value_info is stale after the rewiring: let shape inference rebuild it
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(_toposort(converted))


def _toposort(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise AcmixError("fp16 conversion produced a graph with a cycle or a dangling input")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)
    return model


def to_fp16(model: onnx.ModelProto, plan: Fp16Plan) -> onnx.ModelProto:
    """Apply `plan` with onnxconverter-common (fp32 inputs/outputs), then tidy the fp32 islands."""
    from onnxconverter_common.float16 import convert_float_to_float16

    source = onnx.ModelProto()
    source.CopyFrom(model)
    with warnings.catch_warnings():  # one line per tiny weight rounded to fp16's smallest subnormal
        warnings.filterwarnings("ignore", message=r".*will be truncated to", category=UserWarning)
        converted = convert_float_to_float16(
            source,
            min_positive_val=FP16_MIN_SUBNORMAL,
            max_finite_val=FP16_MAX,
            keep_io_types=True,
            op_block_list=plan.op_block_list,
            node_block_list=list(plan.node_block),
        )
    tidy = _tidy(converted, model)
    blocked = set(plan.op_block_list)
    fp32_nodes = {n.name for n in tidy.graph.node if n.op_type in blocked or n.name in plan.node_block}
    fixed, _ = typefix.reconcile(tidy, fp32_nodes)
    typefix.validate(fixed, "fp16 conversion")
    return fixed


def convert_fp16(
    onnx_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    min_cosine: float = 0.999,
    data: str | os.PathLike[str] = calib.RANDOM,
    samples: int = 16,
    holdout: int = 32,
    margin: float = DEFAULT_MARGIN,
    model: str | None = None,
    workspace: str | os.PathLike[str] | None = None,
    record: bool = True,
    seed: int = 0,
    log: Callable[[str], object] | None = None,
) -> Fp16Result:
    """fp32 ONNX -> verified fp16 ONNX; ParityError (nothing written) below `min_cosine`.
    `log` hears each phase.

    `data` gives the inputs for the range check (`samples`) and the disjoint held-out verification
    set (`holdout`): an image folder, a uint8 NHWC .npy array, or "random".
    """
    log = log or (lambda _m: None)
    from acmix_deploy import validate
    from acmix_deploy.workspace import check_output

    margin = validate.positive_float(margin, "--margin")  # 65504 / margin: 0 divides, < 0 keeps all fp32
    validate.positive_int(samples, "--samples", allow_none=False)
    validate.positive_int(holdout, "--holdout", allow_none=False)
    src, name = load_source(onnx_path, model)
    check_output(onnx_path, output, name, ".fp16.onnx", workspace, record, data)
    inputs = calib.load_split(src, data, samples, holdout, seed)

    log(f"measuring fp32 activation ranges on {len(inputs.calib)} inputs")
    plan = plan_fp16(src, inputs.calib, margin)
    log("converting to fp16 (Softmax, reductions, LayerNorm, logits and large activations stay fp32)")
    fp16_model = to_fp16(src, plan)
    log(f"verifying against fp32 on {len(inputs.holdout)} held-out inputs")
    ref, cand = compare_models(src.SerializeToString(), fp16_model.SerializeToString(), inputs.holdout)
    report = judge(ref, cand, "fp16 vs fp32", f"cosine >= {min_cosine:g}", lambda r: r.cosine >= min_cosine)
    blocked = sum(1 for n in src.graph.node if n.op_type in set(plan.op_block_list) or n.name in plan.node_block)
    result = Fp16Result(None, name, report, plan, blocked, len(src.graph.node))
    result.path = write_verified(
        fp16_model, report, source=onnx_path, output=output, name=name, suffix=".fp16.onnx",
        metadata={"precision": "fp16"}, kind=ws.ONNX_FP16,
        info={"cosine": report.cosine, "top1_agreement": report.top1_agreement},
        workspace=workspace, record=record,
    )
    return result
