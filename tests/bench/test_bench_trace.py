import onnx
import pytest
from onnx import TensorProto, helper

from acmix_deploy.bench.trace import GraphIndex, parse_ort_trace


def _run(ts, dur):
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}


def _node(name, op, ts, dur):
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def test_trace_drops_warmup_runs_and_takes_node_medians():
    events = [
        _run(0, 1000), _node("a", "Conv", 10, 900),  # warm-up run, dropped
        _run(2000, 100), _node("a", "Conv", 2010, 40), _node("b", "Relu", 2060, 10),
        _run(3000, 300), _node("a", "Conv", 3010, 250), _node("b", "Relu", 3270, 20),
        _run(4000, 110), _node("a", "Conv", 4010, 50), _node("b", "Relu", 4070, 30),
        {"cat": "Node", "name": "a_fence_before", "ts": 4005, "dur": 999},  # not a kernel event
    ]  # fmt: skip
    times, ops, run_ms = parse_ort_trace(events, skip_runs=1)
    assert times == {"a": pytest.approx(0.050), "b": pytest.approx(0.020)}  # medians, in ms
    assert ops == {"a": "Conv", "b": "Relu"}
    assert run_ms == pytest.approx(0.110)


def test_trace_without_run_events_uses_every_node_event():
    times, ops, run_ms = parse_ort_trace([_node("a", "Conv", 0, 500)])
    assert times == {"a": pytest.approx(0.5)} and run_ms is None


def _save(tmp_path, name, nodes, inputs, outputs):
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1])  # noqa: E731
    graph = helper.make_graph(nodes, "g", [vi(i) for i in inputs], [vi(o) for o in outputs])
    path = tmp_path / name
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_origin_follows_optimized_graph_tensors_and_fused_ops(tmp_path):
    original = _save(tmp_path, "orig.onnx", [
        helper.make_node("Conv", ["x", "w"], ["c_out"], name="blk.conv1/Conv_0"),
        helper.make_node("Relu", ["c_out"], ["r_out"], name="blk.relu/Relu_1"),
        helper.make_node("Add", ["r_out", "x"], ["y"], name="blk/Add_2"),
    ], ["x", "w"], ["y"])  # fmt: skip
    optimized = _save(tmp_path, "opt.onnx", [
        helper.make_node("Conv", ["x", "w"], ["tok_1"], name="r_out_nchwc"),
        helper.make_node("Identity", ["tok_1"], ["r_out"], name="ReorderOutput_token_9"),
        helper.make_node("Add", ["r_out", "x"], ["y"], name="blk/Add_2"),
    ], ["x", "w"], ["y"])  # fmt: skip
    g = GraphIndex.from_onnx(original, optimized)
    assert g.origin("blk/Add_2", "Add") == "blk/Add_2"
    # a Conv+Relu named after the Relu's output walks back to the Conv
    assert g.origin("r_out_nchwc", "Conv") == "blk.conv1/Conv_0"
    # generated layout node: its output tensor exists in the original graph
    assert g.origin("ReorderOutput_token_9", "ReorderOutput") == "blk.relu/Relu_1"
    # without the optimized graph, unknown names stay as they are
    assert GraphIndex.from_onnx(original).origin("ReorderOutput_token_9") == "ReorderOutput_token_9"
