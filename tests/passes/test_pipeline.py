"""The optimize pipeline: pass selection, the parity gate naming the pass that broke it, the
report, metadata, inputs for the gate."""

from __future__ import annotations

import gc
import math

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import helper

from acmix_deploy.errors import AcmixError, ParityError
from acmix_deploy.passes import DEFAULT_ORDER, PASSES, PassInfo, pipeline, resolve_passes
from acmix_deploy.passes.pipeline import make_inputs, optimize_file, optimize_model
from tests.passes._helpers import init, make_model, ops, rand, vi


def small_model(batch: int | str = 1) -> onnx.ModelProto:
    """q/k/v 1x1 convs + BN + rate Mul: every default pass has something to do."""
    nodes = [
        helper.make_node("Identity", ["x"], ["xi"], name="Identity_0"),
        helper.make_node("Conv", ["xi", "wq", "bq"], ["q"], name="b.conv1/Conv_0"),
        helper.make_node("Conv", ["xi", "wk"], ["k0"], name="b.conv2/Conv_1"),
        helper.make_node("BatchNormalization", ["k0", "g", "be", "m", "v"], ["k"], name="b.bn/BatchNormalization_0"),
        helper.make_node("Conv", ["xi", "wv", "bv"], ["v0"], name="b.conv3/Conv_2"),
        helper.make_node("Mul", ["v0", "rate"], ["vr"], name="b/Mul_0"),
        helper.make_node("Add", ["q", "k"], ["qk"], name="b/Add_0"),
        helper.make_node("Add", ["qk", "vr"], ["s"], name="b/Add_1"),
        helper.make_node("ReduceMean", ["s"], ["y"], name="head/ReduceMean_0", axes=[2, 3], keepdims=0),
    ]
    c = 4
    inits = [init("wq", rand(c, c, 1, 1)), init("bq", rand(c)), init("wk", rand(c, c, 1, 1)), init("wv", rand(c, c, 1, 1)),
             init("bv", rand(c)), init("rate", np.array([0.3], np.float32)), init("g", rand(c) + 2), init("be", rand(c)),
             init("m", rand(c)), init("v", np.abs(rand(c)) + 0.5)]
    model = make_model(nodes, [vi("x", [batch, c, 6, 6])], [vi("y", [batch, c])], inits)
    meta = model.metadata_props.add()
    meta.key, meta.value = "acmix.model", "tiny"
    return model


def every_pass_model() -> onnx.ModelProto:
    """small_model with an exported erf-GELU and a constant subgraph (Sqrt of an initializer) before
    its head: every registered pass, run alone, rewrites it."""
    base = small_model()
    nodes = [n for n in base.graph.node if n.op_type != "ReduceMean"] + [
        helper.make_node("Div", ["s", "sqrt2"], ["act_div"], name="act/Div_0"),
        helper.make_node("Erf", ["act_div"], ["act_erf"], name="act/Erf_0"),
        helper.make_node("Add", ["act_erf", "one"], ["act_add"], name="act/Add_0"),
        helper.make_node("Mul", ["half", "act_add"], ["act_half"], name="act/Mul_0"),
        helper.make_node("Mul", ["s", "act_half"], ["act"], name="act/Mul_1"),
        helper.make_node("Sqrt", ["four"], ["two"], name="shift/Sqrt_0"),
        helper.make_node("Add", ["act", "two"], ["shifted"], name="shift/Add_0"),
        helper.make_node("ReduceMean", ["shifted"], ["y"], name="head/ReduceMean_0", axes=[2, 3], keepdims=0),
    ]
    inits = list(base.graph.initializer) + [
        init("sqrt2", np.array(math.sqrt(2.0), np.float32)), init("one", np.array([1.0], np.float32)),
        init("half", np.array(0.5, np.float32)), init("four", np.full((4, 1, 1), 4.0, np.float32)),
    ]
    return make_model(nodes, list(base.graph.input), list(base.graph.output), inits)


def corrupting(graph: gs.Graph) -> gs.Graph:
    """A broken pass: perturbs one weight by 1%."""
    graph = graph.copy()
    for t in graph.tensors().values():
        if isinstance(t, gs.Constant) and t.values.dtype == np.float32 and t.values.ndim == 4:
            t.values = t.values * 1.01
            break
    return graph


def test_resolve_passes():
    assert resolve_passes() == list(DEFAULT_ORDER)
    assert resolve_passes("fold_batchnorm, fuse_parallel_conv1x1") == ["fold_batchnorm", "fuse_parallel_conv1x1"]
    assert "fold_scalars" not in resolve_passes(skip="fold_scalars")
    with pytest.raises(AcmixError, match="unknown pass nope"):
        resolve_passes("nope")
    with pytest.raises(AcmixError, match="unknown pass"):
        resolve_passes(skip="fold_bn")


def test_default_pipeline_optimizes_and_reports():
    model = small_model()
    optimized, report = optimize_model(model, latency_runs=0)
    assert ops(optimized) == {"Conv": 1, "Split": 1, "Add": 2, "ReduceMean": 1}
    assert report.conv_before == 3 and report.conv_after == 1
    assert report.ops_before["BatchNormalization"] == 1 and "BatchNormalization" not in report.ops_after
    assert report.nodes_before == 9 and report.nodes_after == 5
    assert [p.name for p in report.passes] == list(DEFAULT_ORDER)
    assert report.bytes_before > 0 and report.bytes_after > 0
    assert report.input_shapes == {"x": [1, 4, 6, 6]}
    assert len(report.parity) == 1 and report.parity[0].startswith("PASSED y")
    assert report.latency is None
    assert {p.key: p.value for p in optimized.metadata_props} == {"acmix.model": "tiny"}
    d = report.to_dict()
    assert d["conv_before"] == 3 and d["passes"][0]["name"] == DEFAULT_ORDER[0]


def test_latency_is_reported():
    _, report = optimize_model(small_model(), latency_runs=10)
    lat = report.latency
    assert lat is not None and lat.runs == 10
    assert lat.before_ms > 0 and lat.after_ms > 0 and 0.05 < lat.ratio < 20


def test_latency_is_measured_interleaved(monkeypatch):
    """Every round runs both sessions, the first one alternating; timed rounds run with the
    garbage collector off; both sessions spin off with the caller's thread count."""
    calls: list[tuple[str, bool]] = []  # (model, gc enabled) per session.run
    made: list[dict] = []
    from acmix_deploy.runners import ort as runners_ort

    real_make_session = runners_ort.make_session

    class Recording:
        def __init__(self, tag, session):
            self.tag, self.session = tag, session

        def __getattr__(self, name):  # get_outputs, get_inputs, get_providers: the real session's
            return getattr(self.session, name)

        def run(self, names, feeds):
            calls.append((self.tag, gc.isenabled()))
            return self.session.run(names, feeds)

    def make_session(model_bytes, **kwargs):
        made.append(kwargs)
        return Recording("before" if model_bytes == before else "after", real_make_session(model_bytes, **kwargs))

    model = small_model()
    before = model.SerializeToString()
    optimized, _ = optimize_model(model, latency_runs=0)
    after = optimized.SerializeToString()
    assert before != after
    monkeypatch.setattr(runners_ort, "make_session", make_session)
    gc_was_enabled = gc.isenabled()
    lat = pipeline.measure_latency(before, after, make_inputs(model), runs=12, warmup=3, threads=1)

    assert [k.get("spinning") for k in made] == [False, False]
    assert [k.get("threads") for k in made] == [1, 1]
    assert (lat.runs, lat.warmup, lat.threads) == (12, 3, 1)
    order = [tag for tag, _ in calls]
    assert len(order) == 2 * (3 + 12)
    rounds = [order[i : i + 2] for i in range(0, len(order), 2)]
    assert all(sorted(r) == ["after", "before"] for r in rounds)  # alternate, never A A or B B per round
    first = [r[0] for r in rounds]  # who goes first rotates every round, warm-up and timed alike
    assert first[:3] == ["before", "after", "before"] and first[3:] == ["before", "after"] * 6
    assert not any(enabled for _, enabled in calls[2 * 3 :])  # timed with the GC off
    assert gc.isenabled() == gc_was_enabled
    assert lat.before_ms > 0 and lat.after_ms > 0 and lat.ratio > 0


def test_latency_medians_and_ratio_come_from_paired_rounds(monkeypatch):
    """before/after: medians in ms of the samples; ratio: median of the per-round after / before."""
    seen = {}

    def fake_time_interleaved(items, warmup, measure):
        seen.update(n=len(items), warmup=warmup.iterations, runs=measure.iterations)
        before = np.array([1.0, 2.0, 4.0, 100.0] + [2.0] * 6)
        after = np.array([2.0, 1.0, 1.0, 1.0] + [1.0] * 6)
        return [before, after]

    monkeypatch.setattr(pipeline, "time_interleaved", fake_time_interleaved)
    model = small_model()
    b = model.SerializeToString()
    lat = pipeline.measure_latency(b, b, make_inputs(model), runs=10, warmup=2)
    assert seen == {"n": 2, "warmup": 2, "runs": 10}
    assert lat.before_ms == 2.0 and lat.after_ms == 1.0
    assert lat.ratio == pytest.approx(0.5)  # per-round ratios: 2, .5, .25, .01, .5 x6


@pytest.mark.parametrize("asked", [1, 5, 10])
def test_latency_runs_are_at_least_the_minimum(monkeypatch, asked):
    seen = {}

    def fake_time_interleaved(items, warmup, measure):
        seen["runs"] = measure.iterations
        return [np.ones(measure.iterations), np.ones(measure.iterations)]

    monkeypatch.setattr(pipeline, "time_interleaved", fake_time_interleaved)
    _, report = optimize_model(small_model(), latency_runs=asked)
    assert seen["runs"] == report.latency.runs == max(asked, pipeline.MIN_LATENCY_RUNS) == 10


@pytest.mark.parametrize("debug", [False, True], ids=["culprit-search", "debug"])
def test_gate_names_the_pass_that_broke_parity(monkeypatch, debug):
    monkeypatch.setitem(PASSES, "fold_scalars", PassInfo("fold_scalars", corrupting, "broken"))
    with pytest.raises(ParityError, match="after pass 'fold_scalars'.*FAILED y"):
        optimize_model(small_model(), latency_runs=0, debug=debug)


def test_gate_names_a_pass_that_breaks_the_graph(monkeypatch):
    def drop_outputs(graph: gs.Graph) -> gs.Graph:
        graph = graph.copy()
        graph.nodes = [n for n in graph.nodes if n.op != "ReduceMean"]
        return graph

    monkeypatch.setitem(PASSES, "eliminate_noops", PassInfo("eliminate_noops", drop_outputs, "broken"))
    with pytest.raises(ParityError, match="after pass 'eliminate_noops'"):
        optimize_model(small_model(), latency_runs=0)


def test_debug_records_parity_after_every_pass():
    _, report = optimize_model(small_model(), passes="fold_batchnorm,fuse_parallel_conv1x1", debug=True, latency_runs=0)
    assert [len(p.parity) for p in report.passes] == [1, 1]
    assert all(p.parity[0].startswith("PASSED") for p in report.passes)


def test_make_inputs_uses_batch_2_for_dynamic_batch_and_requires_other_dims():
    feeds = make_inputs(small_model(batch="N"))
    assert feeds["x"].shape == (2, 4, 6, 6) and feeds["x"].dtype == np.float32
    np.testing.assert_array_equal(feeds["x"], make_inputs(small_model(batch="N"))["x"])  # seeded
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [1, "H"])], [vi("y", [1, "H"])])
    with pytest.raises(AcmixError, match="dynamic dimension at axis 1"):
        make_inputs(model)
    assert make_inputs(model, input_shapes={"x": (3, 5)})["x"].shape == (3, 5)
    with pytest.raises(AcmixError, match="names no model input"):
        make_inputs(model, input_shapes={"x": (1, 2), "z": (1,)})


def test_optimize_file_writes_nothing_when_the_gate_fails(monkeypatch, tmp_path):
    src = tmp_path / "m.onnx"
    onnx.save(small_model(), str(src))
    out = tmp_path / "m.opt.onnx"
    monkeypatch.setitem(PASSES, "fold_batchnorm", PassInfo("fold_batchnorm", corrupting, "broken"))
    with pytest.raises(ParityError, match="fold_batchnorm"):
        optimize_file(src, latency_runs=0)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temp file left behind


def test_optimize_file_default_output_and_sizes(tmp_path):
    src = tmp_path / "m.onnx"
    onnx.save(small_model(), str(src))
    report = optimize_file(src, latency_runs=0)
    out = tmp_path / "m.opt.onnx"
    assert report.output == str(out) and out.exists()
    assert report.bytes_before == src.stat().st_size and report.bytes_after == out.stat().st_size
    onnx.checker.check_model(onnx.load(str(out)))


def test_unreadable_input_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(AcmixError, match="is not an ONNX model"):
        optimize_file(bad, latency_runs=0)
    with pytest.raises(AcmixError, match="does not exist"):
        optimize_file(tmp_path / "missing.onnx", latency_runs=0)


def _wiring(graph: gs.Graph) -> list[tuple]:
    """The nodes as (op, input names, output names), in no particular order (passes toposort)."""
    return sorted((n.op, tuple(t.name for t in n.inputs), tuple(t.name for t in n.outputs)) for n in graph.nodes)


@pytest.mark.parametrize("name", list(PASSES))
def test_passes_are_pure_functions(name):
    """A pass returns a new, rewritten graph and leaves the one it was given untouched."""
    graph = gs.import_onnx(every_pass_model())
    before = gs.export_onnx(graph, do_type_check=False).SerializeToString()
    wiring = _wiring(graph)
    result = PASSES[name].fn(graph)
    assert result is not graph
    assert _wiring(result) != wiring  # the pass did rewrite this model
    assert gs.export_onnx(graph, do_type_check=False).SerializeToString() == before


def test_input_that_ort_cannot_run_is_a_user_error():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [1, 2])], [vi("y", [1, 2])])
    model.graph.node[0].op_type = "NoSuchOp"
    with pytest.raises(AcmixError, match="does not run in ONNX Runtime"):
        optimize_model(model, latency_runs=0)


def test_a_crashing_pass_is_a_one_line_error_naming_it(monkeypatch):
    def crash(graph: gs.Graph) -> gs.Graph:
        raise KeyError("boom")

    monkeypatch.setitem(PASSES, "fold_batchnorm", PassInfo("fold_batchnorm", crash, "broken"))
    with pytest.raises(AcmixError, match="pass 'fold_batchnorm' failed on this model .*--skip fold_batchnorm"):
        optimize_model(small_model(), latency_runs=0)
