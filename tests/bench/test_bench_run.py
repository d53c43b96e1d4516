"""The bench end to end: real worker processes, emulators, paced devices, /proc, JSON.

The script is shorter than ``--quick`` (one barge-in, then a drop and a GoAway) but runs the
same code path. Only the shape of the result is checked: the speed goals live in the
benchmark's own table, not in timed tests.
"""

from __future__ import annotations

import json
import math

import pytest

from edgevoice.bench import report
from edgevoice.bench.runner import BenchOptions, render_texts, run_bench
from edgevoice.bench.script import build_script
from edgevoice.bench.stats import CLIENTS, FIGURES, LATENCY_FIGURES
from edgevoice.cli import build_parser, main

pytestmark = pytest.mark.slow


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


async def test_a_short_bench_gives_every_figure_for_both_clients(tmp_path):
    speech, replies = render_texts()
    speech_s = {text: len(pcm) / 16000 for text, pcm in speech.items()}
    script = build_script("BX", speech_s=speech_s, reply_s=replies)
    lines: list[str] = []
    document = await run_bench(
        BenchOptions(quick=True, script=script, import_runs=1, keep_dir=tmp_path / "run"), lines.append
    )
    path = tmp_path / "bench.json"
    report.write_json(document, path)
    document = json.loads(path.read_text())

    summary = document["summary"]
    assert summary["period_ms"] == document["period_ms"] == 20
    assert summary["prebuffer_ms"] == document["prebuffer_ms"] == 100
    for client in CLIENTS:
        assert set(summary[client]) == set(FIGURES)
        for figure in FIGURES:
            values = summary[client][figure]
            assert set(values) == {"p50", "p99", "max"}, (client, figure)
            assert all(is_number(v) for v in values.values()), (client, figure, values)
            assert values["p50"] <= values["p99"] <= values["max"]
        for figure in LATENCY_FIGURES:
            raw = document["samples"][client][figure]
            assert raw and all(is_number(v) for v in raw)
            assert max(raw) == pytest.approx(summary[client][figure]["max"], abs=1e-3)
        counters = document["counters"][client]
        assert counters["server_faults"] == 2
        assert counters["server_replies_interrupted"] >= 1
        assert counters["server_tool_responses"] >= 1
    # The same figures for EdgeVoice without its probe, for the overhead comparison.
    overhead = document["probe_overhead"]
    assert is_number(overhead["cpu_percent_probe_on"]) and is_number(overhead["cpu_percent_probe_off"])
    assert document["samples"]["edgevoice-probe-off"] == {}
    machine = document["machine"]
    assert machine["cores"] >= 1 and machine["python"] and machine["libraries"]["google-genai"]
    assert document["configuration"]["script"]["plan"] == "BX"
    assert document["startup"]["import_modules"] and document["startup"]["import_s"]
    for name in ("edgevoice", "reference", "edgevoice-probe-off"):
        resources = document["resources"][name]
        assert len(resources["samples"]) >= 10
        assert [f["fault"] for f in document["faults"][name]] == ["drop", "goaway:1"]
    text = report.table(document)
    assert all(report.LABELS[figure] in text for figure in FIGURES)


def test_bench_is_a_subcommand_with_its_options():
    args = build_parser().parse_args(["bench", "--quick", "--json", "out.json", "--plot", "p.png"])
    assert args.quick and str(args.json) == "out.json" and str(args.plot) == "p.png"
    assert args.handler is not None


def test_an_output_in_a_missing_directory_is_refused_before_running(tmp_path, capsys):
    status = main(["bench", "--quick", "--json", str(tmp_path / "missing" / "out.json")])
    assert status != 0
    error = capsys.readouterr().err
    assert "does not exist" in error and "Traceback" not in error
