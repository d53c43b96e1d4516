"""The benchmark's outputs: a table for people, the JSON document, the latency plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgevoice.errors import UserError
from edgevoice_testbed.bench.stats import FIGURES, LATENCY_FIGURES

LABELS = {
    "capture_to_wire_ms": "capture to wire (ms)",
    "release_to_activity_end_ms": "release to activityEnd (ms)",
    "reply_to_speaker_ms": "reply to speaker (ms)",
    "first_sound_ms": "release to first sound, device's share (ms)",
    "barge_in_ms": "barge-in (ms)",
    "reconnect_ms": "reconnect (ms)",
    "goaway_gap_ms": "GoAway switch gap (ms)",
    "cpu_percent": "CPU (% of one core)",
    "idle_cpu_percent": "CPU while idle (% of one core)",
    "rss_steady_mb": "RSS steady (MB)",
    "rss_growth_mb": "RSS growth (MB/10 min)",
    "startup_s": "start-up to READY (s)",
}


def _triple(figure: dict[str, float] | None) -> str:
    if figure is None:
        return "n/a"
    values = (figure["p50"], figure["p99"], figure["max"])
    if values[0] == values[1] == values[2]:
        return _number(values[0])
    return " / ".join(_number(v) for v in values)


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(document: dict[str, Any]) -> str:
    """Figure, EdgeVoice p50/p99/max, reference p50/p99/max, ratio, floor, pass/fail."""
    summary = document["summary"]
    evaluation = document["evaluation"]
    rows = [("figure", "EdgeVoice p50/p99/max", "reference p50/p99/max", "ratio", "floor", "")]
    for figure in FIGURES:
        verdict = evaluation[figure]
        ratio = verdict["ratio_reference_to_edgevoice"]
        passed = verdict["pass"]
        rows.append(
            (
                LABELS[figure],
                _triple(summary["edgevoice"][figure]),
                _triple(summary["reference"][figure]),
                f"{ratio:.2f}x" if ratio is not None else "n/a",
                verdict["rule"] or "",
                "n/a" if passed is None else ("pass" if passed else "FAIL"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines += _loaded_lines(document.get("loaded"))
    lines += _pattern_lines(document.get("chunk_patterns"))
    notes = [
        "ratio: the reference's p99 over EdgeVoice's (above 1: EdgeVoice is lower). "
        "RSS growth is extrapolated to 10 minutes from the run after its warm-up.",
    ]
    idle_s = document.get("idle_s")
    if idle_s:
        notes.append(
            f"idle CPU: the last {idle_s:g} s of the conversation, connected, nobody speaking"
            + (" (a full run measures 60 s)." if document.get("mode") == "quick" else ".")
        )
    overhead = document.get("probe_overhead")
    if overhead:
        notes.append(
            f"probe overhead: EdgeVoice CPU {overhead['cpu_percent_probe_on']:.2f} % with the probe, "
            f"{overhead['cpu_percent_probe_off']:.2f} % without ({overhead['change_percent']:+.1f} %)."
        )
    scheduling = document.get("configuration", {}).get("edgevoice", {}).get("scheduling", {}).get("as_unit")
    if scheduling is not None:
        notes.append(
            "EdgeVoice ran with its unit's scheduling where this machine allows: "
            f"nice {scheduling.get('nice', 0)}, audio threads "
            + (f"SCHED_FIFO {scheduling['audio_threads_sched_fifo']}"
               if scheduling.get("audio_threads_sched_fifo") else "not real-time")
            + "".join(f", {key}={value}" for key, value in scheduling.get("environment", {}).items())
            + "; the reference as a quickstart runs (no changes)."
        )
    machine = document["machine"]
    notes.append(
        f"machine: {machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}; "
        f"{document['mode']} run, clients {document['clients_ran']}, "
        f"period {document['period_ms']} ms, prebuffer {document['prebuffer_ms']} ms."
    )
    return "\n".join([*lines, "", *notes])


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def _verdict(value: bool | None) -> str:
    return "n/a" if value is None else ("pass" if value else "FAIL")


def _loaded_lines(loaded: dict[str, Any] | None) -> list[str]:
    if not loaded:
        return []
    summary, counters, evaluation = loaded["summary"], loaded["counters"], loaded["evaluation"]
    rows = [(f"with {loaded['competitors']} CPU-bound competitors", "EdgeVoice p50/p99/max",
             "reference p50/p99/max", "goal", "")]
    for figure in (*LATENCY_FIGURES, "cpu_percent"):
        verdict = evaluation.get(figure, {})
        rows.append((LABELS[figure], _triple(summary["edgevoice"].get(figure)),
                     _triple(summary["reference"].get(figure)), verdict.get("rule") or "",
                     _verdict(verdict.get("pass")) if verdict else ""))
    for name, label in (
        ("capture_overruns", "capture overruns"),
        ("playback_underruns", "playback underruns"),
    ):
        rows.append((label, str(counters["edgevoice"][name]), str(counters["reference"][name]), "0",
                     _verdict(evaluation[name]["pass"])))
    return ["", *_columns(rows)]


def _pattern_lines(patterns: dict[str, Any] | None) -> list[str]:
    if not patterns:
        return []
    clients, evaluation = patterns["clients"], patterns["evaluation"]
    rows = [("chunk pattern: underruns after first sound / first sound (ms)", "EdgeVoice", "reference",
             "goal", "")]

    def cell(entry: dict[str, Any]) -> str:
        first = entry["first_sound_ms"]
        return f"{entry['underruns_after_first_sound']} / " + ("n/a" if first is None else _number(first))

    for name in patterns["patterns"]:
        rows.append((name, cell(clients["edgevoice"][name]), cell(clients["reference"][name]),
                     evaluation[name]["rule"], _verdict(evaluation[name]["pass"])))
    return ["", *_columns(rows)]


def write_json(document: dict[str, Any], path: Path) -> None:
    try:
        path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def plot(document: dict[str, Any], path: Path) -> None:
    """One panel per latency figure: the distribution (CDF) of every sample, both clients."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError:
        raise UserError(
            "--plot needs matplotlib: install the plot extra (pip install 'edgevoice-testbed[plot]')"
        ) from None
    samples = document["samples"]
    loaded = (document.get("loaded") or {}).get("samples", {})
    panels = [(name, samples, LABELS[name]) for name in LATENCY_FIGURES]
    if loaded:
        panels += [(name, loaded, f"{LABELS[name]}, CPU-bound competitors")
                   for name in ("capture_to_wire_ms", "barge_in_ms")]
    figure, axes = plt.subplots(3, 3, figsize=(15, 12.5))
    for axis in axes.flat[len(panels):]:
        axis.set_visible(False)
    for axis, (name, source, title) in zip(axes.flat, panels, strict=False):
        for client, style in (("edgevoice", "-"), ("reference", "--")):
            values = sorted(source.get(client, {}).get(name, []))
            if not values:
                continue
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            axis.step(values, fractions, style, where="post", label=f"{client} (n={len(values)})")
        axis.set_title(title)
        axis.set_ylabel("fraction of samples")
        axis.set_ylim(0, 1.02)
        if name in ("capture_to_wire_ms", "reply_to_speaker_ms"):
            axis.set_xscale("log")
            axis.xaxis.set_minor_formatter(NullFormatter())
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize="small", loc="lower right")
    machine = document["machine"]
    figure.suptitle(
        f"edgevoice bench ({document['mode']}): latency distributions; "
        f"{machine['cpu_model']}, {machine['cores']} cores"
    )
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)
