import csv
import json

import pytest
from PIL import Image
from rich.console import Console

from tests.bench import bench_standins as S
from acmix_deploy.bench.markdown import render_markdown
from acmix_deploy.bench.report import CSV_COLUMNS, load_json, render_table, write_csv, write_json, write_plot
from acmix_deploy.errors import AcmixError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result():
    return S.synthetic_result()


def test_json_schema(result, tmp_path):
    path = write_json(result, tmp_path / "r.json")
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == "1.0" and doc["kind"] == "acmix-deploy/bench"
    assert doc["command"].startswith("acmix-deploy bench --model tiny_acmix --backend onnxruntime")
    assert "--baseline tiny_plain" in doc["command"] and "--iterations 4" in doc["command"]
    assert doc["config"]["batches"] == [1, 4] and doc["config"]["threads"] == 2
    assert doc["method"]["interleaved"] is True and doc["method"]["ort_spinning"] is False
    m = doc["machine"]
    for key in ("cpu_model", "cpu_logical_cores", "cpu_usable", "gpus", "versions", "os", "python"):
        assert key in m
    assert {"torch", "onnxruntime", "acmix-deploy"} <= set(m["versions"])
    assert len(doc["rows"]) == len(result.rows)
    row = doc["rows"][0]
    assert set(row) == {"role", "model", "backend", "batch", "status", "reason", "iterations", "latency_ms",
                        "throughput_ips", "cv", "cv_warning", "memory", "memory_error", "ratio", "median_ratio"}
    assert set(row["latency_ms"]) == {"mean", "median", "p90", "p95", "p99", "min", "max", "std"}
    assert row["latency_ms"]["median"] == pytest.approx(2.0) and row["throughput_ips"] == pytest.approx(500.0)
    assert row["ratio"] == 2.0 and row["memory"]["added_rss_mb"] == pytest.approx(201.0)
    unavailable = [r for r in doc["rows"] if r["status"] == "unavailable"]
    assert len(unavailable) == 4 and all(r["latency_ms"] is None and "CUDA GPU" in r["reason"] for r in unavailable)
    assert load_json(path)["rows"] == doc["rows"]


def test_load_json_refuses_other_documents(tmp_path):
    (tmp_path / "a.json").write_text('{"kind": "something"}')
    with pytest.raises(AcmixError, match="not an acmix-deploy bench result"):
        load_json(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"kind": "acmix-deploy/bench", "schema_version": "2.0"}')
    with pytest.raises(AcmixError, match="schema version 2.0"):
        load_json(tmp_path / "b.json")
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(AcmixError, match="cannot read"):
        load_json(tmp_path / "c.json")


def test_csv_columns_and_values(result, tmp_path):
    path = write_csv(result, tmp_path / "r.csv")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == len(result.rows)
    first = rows[0]
    assert (first["role"], first["backend"], first["batch"], first["status"]) == ("model", "onnxruntime", "1", "ok")
    assert float(first["median_ms"]) == pytest.approx(2.0) and float(first["ratio"]) == 2.0
    assert float(first["p90_ms"]) == pytest.approx(result.rows[0].stats.p90_ms)
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and failed[0]["median_ms"] == "" and failed[0]["reason"] == "RuntimeError: boom"


def test_plot_is_a_valid_png(result, tmp_path):
    path = write_plot(result, tmp_path / "r.png")
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 800 and img.size[1] > 300
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_plot_with_nothing_measured_writes_nothing(result, tmp_path):
    from dataclasses import replace

    empty = replace(result, rows=[r for r in result.rows if r.status != "ok"])
    with pytest.raises(AcmixError, match="nothing to plot"):
        write_plot(empty, tmp_path / "e.png")
    assert list(tmp_path.iterdir()) == []


def test_table_shows_ratios_unavailable_and_failures(result):
    console = Console(width=250, record=True)
    render_table(result, console)
    text = console.export_text()
    assert "2.00x" in text
    assert "unavailable: TensorRT needs a CUDA GPU; none found" in text
    assert "failed: RuntimeError: boom" in text
    # an unavailable backend shows once per role (batch "all"), not once per batch
    assert text.count("unavailable: TensorRT") == 2
    assert "interleaved with the baseline" in text


def test_markdown_method_follows_the_run(result):
    """Only a run with a baseline claims interleaved timing with spinning off."""
    import dataclasses

    assert "interleaved round by round" in render_markdown([result])
    alone = dataclasses.replace(result, interleaved=False, ort_spinning=True)
    md = render_markdown([alone])
    assert "interleaved" not in md and "no baseline: each backend timed alone" in md


def test_markdown_table(result):
    md = render_markdown([result])
    assert "| Model | Backend | Batch | Median ms |" in md
    assert "| tiny_acmix | onnxruntime | 4 | 8.00 |" in md and "| 2.00x |" in md
    eager = next(line for line in md.splitlines() if line.startswith("| tiny_acmix | torch-eager | 1 | 5.00 |"))
    assert eager.endswith("| - | - | - |")  # no baseline measured there: no ratio
    assert "Not measured: tiny_acmix / tensorrt: unavailable" in md
    assert "Machine: " in md and "Versions: acmix-deploy" in md
    assert "```bash\nacmix-deploy bench --model tiny_acmix" in md
    # JSON documents render the same as results
    assert render_markdown([result.to_dict()]) == md
