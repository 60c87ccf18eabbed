"""Make a mixed fp16 / fp32 graph type-consistent, then prove it loads.

onnxconverter-common decides each node's precision on its own and inserts Casts only where it
sees a boundary; on the real exports it misses some: an initializer shared by an fp32-blocked
node and an fp16 node stays fp32 (deduplicated constants such as a zero bias feeding both a
LayerNormalization and an Add), and opset-18 DequantizeLinear needs fp32 scales whatever the
converter made of them. `reconcile` walks the graph in order with the operator schemas: where the
inputs bound to one type parameter disagree it casts them to the node's intended precision (fp32
for blocked nodes, else fp16), and inputs declared with a fixed type get that type. Constants are
converted in place of a Cast (a copy, when the fp16 range allows). `validate` then runs the
checker with strict shape inference and an ONNX Runtime load, so a bad graph is reported before
anything is written.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from acmix_deploy.errors import AcmixError, first_line

FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16)
_FP16_MAX = 65504.0
_LITERAL = {"tensor(float)": TensorProto.FLOAT, "tensor(float16)": TensorProto.FLOAT16}


def _opset(model: onnx.ModelProto, domain: str) -> int:
    for imp in model.opset_import:
        if imp.domain in (domain, "ai.onnx" if domain == "" else domain):
            return imp.version
    return 1


def _formal(schema, i: int, outputs: bool = False):
    params = schema.outputs if outputs else schema.inputs
    if not params:
        return None
    if i < len(params):
        return params[i]
    last = params[-1]
    return last if last.option == onnx.defs.OpSchema.FormalParameterOption.Variadic else None


def _known_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({i.name: i.data_type for i in g.initializer})
    return types


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def reconcile(model: onnx.ModelProto, fp32_nodes: set[str]) -> tuple[onnx.ModelProto, int]:
    """Insert the missing fp16/fp32 Casts (see the module docstring); returns (a new model, casts added)."""
    model = _copy(model)
    graph = model.graph
    state = _Types(model)
    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    state.types[node.output[0]] = attr.t.data_type
            new_nodes.append(node)
            continue
        try:
            schema = onnx.defs.get_schema(node.op_type, _opset(model, node.domain), node.domain)
        except onnx.defs.SchemaError:
            schema = None
        want = TensorProto.FLOAT if node.name in fp32_nodes else TensorProto.FLOAT16
        bound = state.bind_inputs(node, schema, want, new_nodes) if schema is not None else {}
        new_nodes.append(node)
        state.record_outputs(node, schema, bound)
    del graph.node[:]
    graph.node.extend(new_nodes)
    for out in graph.output:
        if out.name in state.types and state.types[out.name] != out.type.tensor_type.elem_type:
            raise AcmixError(f"graph output {out.name} would change type; the fp16 conversion is inconsistent")
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model), state.added


class _Types:
    """The element type of every tensor seen so far in a walk of the graph in order, and the casts
    (or converted initializer copies) made on the way."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.graph = graph
        self.fallback = _known_types(model)
        self.types: dict[str, int] = {i.name: i.type.tensor_type.elem_type for i in graph.input}
        self.inits = {i.name: i for i in graph.initializer}
        self.types.update({name: init.data_type for name, init in self.inits.items()})
        self.casts: dict[tuple[str, int], str] = {}
        self.added = 0

    def of(self, tensor: str) -> int | None:
        return self.types.get(tensor, self.fallback.get(tensor))

    def bind_inputs(self, node: onnx.NodeProto, schema, want: int, new_nodes: list[onnx.NodeProto]) -> dict[str, int]:
        """Cast the inputs of each type parameter to one type (`want` where they disagree, the literal
        type where the schema fixes it); returns type parameter -> bound type."""
        bound: dict[str, int] = {}
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(node.input):
            formal = _formal(schema, i)
            if name and formal is not None:
                groups.setdefault(formal.type_str, []).append(i)
        for type_str, positions in groups.items():
            present = {self.of(node.input[i]) for i in positions}
            if type_str in _LITERAL:
                target = _LITERAL[type_str]
            elif present >= set(FLOATS):
                target = want
            else:
                if len(present) == 1:
                    bound[type_str] = present.pop()
                continue
            for i in positions:
                if self.of(node.input[i]) in FLOATS and self.of(node.input[i]) != target:
                    node.input[i] = self.converted(node.input[i], target, node, new_nodes)
            bound[type_str] = target
        return bound

    def converted(self, tensor: str, to: int, at: onnx.NodeProto, new_nodes: list[onnx.NodeProto]) -> str:
        """`tensor` as type `to`: a converted initializer copy where the fp16 range allows, else a Cast."""
        key = (tensor, to)
        if key in self.casts:
            return self.casts[key]
        suffix = "__fp16" if to == TensorProto.FLOAT16 else "__fp32"
        name = f"{tensor}{suffix}"
        init = self.inits.get(tensor)
        arr = numpy_helper.to_array(init) if init is not None else None
        if arr is not None and (to == TensorProto.FLOAT or not np.any(np.abs(arr[np.isfinite(arr)]) > _FP16_MAX)):
            dtype = np.float16 if to == TensorProto.FLOAT16 else np.float32
            self.graph.initializer.append(numpy_helper.from_array(arr.astype(dtype), name))
            self.inits[name] = self.graph.initializer[-1]
        else:
            new_nodes.append(helper.make_node("Cast", [tensor], [name], to=to, name=f"{at.name}/cast{suffix}_{tensor}"))
            self.added += 1
        self.types[name] = to
        self.casts[key] = name
        return name

    def record_outputs(self, node: onnx.NodeProto, schema, bound: dict[str, int]) -> None:
        """The output types: a Cast's `to`, a bound or literal type parameter, else the shape inference's."""
        for j, out in enumerate(node.output):
            if node.op_type == "Cast":
                self.types[out] = next(a.i for a in node.attribute if a.name == "to")
                continue
            formal = _formal(schema, j, outputs=True) if schema is not None else None
            if formal is not None and formal.type_str in bound:
                self.types[out] = bound[formal.type_str]
            elif formal is not None and formal.type_str in _LITERAL:
                self.types[out] = _LITERAL[formal.type_str]
            elif out in self.fallback:
                self.types[out] = self.fallback[out]


def validate(model: onnx.ModelProto, what: str) -> None:
    """Checker with strict shape inference, then an ONNX Runtime load: one-line AcmixError if either fails."""
    from acmix_deploy.runners import OnnxRuntimeRunner

    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise AcmixError(f"{what} produced an invalid graph: {first_line(exc)}") from None
    try:
        OnnxRuntimeRunner(model.SerializeToString(), optimization="disable").activate().deactivate()
    except AcmixError as exc:
        raise AcmixError(f"{what} produced a graph {exc}") from None
