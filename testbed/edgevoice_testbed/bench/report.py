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
    "barge_in_ms": "barge-in (ms)",
    "reconnect_ms": "reconnect (ms)",
    "goaway_gap_ms": "GoAway switch gap (ms)",
    "cpu_percent": "CPU (% of one core)",
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
    notes = [
        "ratio: the reference's p99 over EdgeVoice's (above 1: EdgeVoice is lower). "
        "RSS growth is extrapolated to 10 minutes from the run after its warm-up.",
    ]
    overhead = document.get("probe_overhead")
    if overhead:
        notes.append(
            f"probe overhead: EdgeVoice CPU {overhead['cpu_percent_probe_on']:.2f} % with the probe, "
            f"{overhead['cpu_percent_probe_off']:.2f} % without ({overhead['change_percent']:+.1f} %)."
        )
    machine = document["machine"]
    notes.append(
        f"machine: {machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}; "
        f"{document['mode']} run, clients {document['clients_ran']}, "
        f"period {document['period_ms']} ms, prebuffer {document['prebuffer_ms']} ms."
    )
    return "\n".join([*lines, "", *notes])


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
            "--plot needs matplotlib: install the plot extra (pip install 'edgevoice[plot]')"
        ) from None
    samples = document["samples"]
    figure, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for axis, name in zip(axes.flat, LATENCY_FIGURES, strict=True):
        for client, style in (("edgevoice", "-"), ("reference", "--")):
            values = sorted(samples.get(client, {}).get(name, []))
            if not values:
                continue
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            axis.step(values, fractions, style, where="post", label=f"{client} (n={len(values)})")
        axis.set_title(LABELS[name])
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
