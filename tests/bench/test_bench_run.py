"""The bench end to end, exactly as CI runs it: ``edgevoice bench --quick --json FILE``.

Real worker processes, emulators, paced devices, /proc, JSON. Only the shape of the result
is checked: the speed goals live in the benchmark's own table, not in timed tests.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgevoice.cli import build_parser, main
from edgevoice_testbed.bench import report
from edgevoice_testbed.bench.stats import CLIENTS, FIGURES, LATENCY_FIGURES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def test_the_quick_bench_gives_every_figure_for_both_clients(tmp_path):
    path = tmp_path / "bench.json"
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, "-m", "edgevoice", "bench", "--quick", "--json", str(path)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    check_quick_document(json.loads(path.read_text()))


def check_quick_document(document: dict) -> None:
    """The shape of a quick run's JSON (also usable on a kept ``--json`` file)."""

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
    assert document["configuration"]["script"]["plan"] == "BBX"
    assert document["startup"]["import_modules"] and document["startup"]["import_s"]
    for name in ("edgevoice", "reference", "edgevoice-probe-off"):
        resources = document["resources"][name]
        assert len(resources["samples"]) >= 10
        assert [f["fault"] for f in document["faults"][name]] == ["drop", "goaway:1"]
    # The device's share of the time to first sound, one per answered utterance at least,
    # and the idle CPU over the quick run's shorter idle tail.
    assert document["idle_s"] == 10
    for client in CLIENTS:
        assert len(document["samples"][client]["first_sound_ms"]) >= 4
        assert summary[client]["idle_cpu_percent"]["p50"] >= 0
    # The same conversation beside two CPU-bound processes: the figures, overruns, underruns.
    loaded = document["loaded"]
    assert loaded["competitors"] == 2
    for client in CLIENTS:
        for figure in ("capture_to_wire_ms", "barge_in_ms", "first_sound_ms", "cpu_percent"):
            values = loaded["summary"][client][figure]
            assert all(is_number(v) for v in values.values()), (client, figure, values)
        assert set(loaded["counters"][client]) == {"capture_overruns", "playback_underruns"}
        assert all(isinstance(v, int) and v >= 0 for v in loaded["counters"][client].values())
    assert set(loaded["evaluation"]) == {
        "capture_to_wire_ms", "barge_in_ms", "capture_overruns", "playback_underruns"
    }
    # Servers whose audio comes in small chunks, in bursts, and slower than real time.
    patterns = document["chunk_patterns"]
    assert list(patterns["patterns"]) == ["small", "bursts", "slow"]
    for client in CLIENTS:
        for name in patterns["patterns"]:
            entry = patterns["clients"][client][name]
            assert isinstance(entry["underruns_after_first_sound"], int)
            assert is_number(entry["first_sound_ms"]), (client, name, entry)
    assert all(isinstance(v["pass"], bool) for v in patterns["evaluation"].values())
    text = report.table(document)
    assert all(report.LABELS[figure] in text for figure in FIGURES)
    assert "CPU-bound competitors" in text and "chunk pattern" in text and "slow" in text


def test_bench_is_a_subcommand_with_its_options():
    argv = ["bench", "--quick", "--json", "out.json", "--plot", "p.png"]
    args = build_parser(argv).parse_args(argv)
    assert args.quick and str(args.json) == "out.json" and str(args.plot) == "p.png"
    assert args.handler is not None


def test_an_output_in_a_missing_directory_is_refused_before_running(tmp_path, capsys):
    status = main(["bench", "--quick", "--json", str(tmp_path / "missing" / "out.json")])
    assert status != 0
    error = capsys.readouterr().err
    assert "does not exist" in error and "Traceback" not in error
