"""The figures of a benchmark run, computed from raw samples (plain functions, no I/O)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

LATENCY_FIGURES = (
    "capture_to_wire_ms",
    "release_to_activity_end_ms",
    "reply_to_speaker_ms",
    "first_sound_ms",
    "barge_in_ms",
    "reconnect_ms",
    "goaway_gap_ms",
)
RESOURCE_FIGURES = ("cpu_percent", "idle_cpu_percent", "rss_steady_mb", "rss_growth_mb", "startup_s")
FIGURES = LATENCY_FIGURES + RESOURCE_FIGURES
CLIENTS = ("edgevoice", "reference")

# RSS growth is measured after this much of the conversation (imports, caches and the
# allocator's arenas settle first), and given per ten minutes.
WARM_UP_FRACTION = 0.25
WARM_UP_MIN_S = 10.0
GROWTH_PER_S = 600.0
# A slope over less than this after the warm-up says little about ten minutes: reported,
# not judged against the goal (the quick run's growth is indicative only).
GROWTH_MIN_WINDOW_S = 120.0

Figure = dict[str, float]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(values: Sequence[float]) -> Figure | None:
    if not values:
        return None
    return {
        "p50": round(percentile(values, 50), 4),
        "p99": round(percentile(values, 99), 4),
        "max": round(max(values), 4),
    }


def single(value: float | None) -> Figure | None:
    """A figure with one value gives it as all three."""
    if value is None:
        return None
    value = round(value, 4)
    return {"p50": value, "p99": value, "max": value}


@dataclass(frozen=True)
class ResourceSample:
    t: float  # monotonic seconds
    cpu_s: float  # user + system CPU seconds of the whole process so far
    rss_mb: float
    hwm_mb: float  # peak RSS so far (VmHWM)


def window(samples: Sequence[ResourceSample], start: float, end: float) -> list[ResourceSample]:
    return [s for s in samples if start <= s.t <= end]


def cpu_percent(samples: Sequence[ResourceSample], start: float, end: float) -> float | None:
    """CPU time over wall time inside [start, end], as a percentage of one core."""
    inside = window(samples, start, end)
    if len(inside) < 2 or inside[-1].t <= inside[0].t:
        return None
    return (inside[-1].cpu_s - inside[0].cpu_s) / (inside[-1].t - inside[0].t) * 100.0


def rss_steady_mb(samples: Sequence[ResourceSample], start: float, end: float) -> float | None:
    """The median RSS over the second half of the conversation."""
    inside = window(samples, start + (end - start) / 2, end)
    return statistics.median(s.rss_mb for s in inside) if inside else None


def warm_up_end(start: float, end: float) -> float:
    return start + max(WARM_UP_MIN_S, (end - start) * WARM_UP_FRACTION)


def rss_growth_mb(samples: Sequence[ResourceSample], start: float, end: float) -> float | None:
    """RSS growth per ten minutes: the least-squares slope after the warm-up, extrapolated."""
    inside = window(samples, warm_up_end(start, end), end)
    if len(inside) < 3:
        return None
    ts = [s.t for s in inside]
    mean_t = statistics.fmean(ts)
    mean_rss = statistics.fmean(s.rss_mb for s in inside)
    spread = sum((t - mean_t) ** 2 for t in ts)
    if spread == 0:
        return None
    slope = sum((s.t - mean_t) * (s.rss_mb - mean_rss) for s in inside) / spread
    return slope * GROWTH_PER_S


def growth_window_s(start: float, end: float) -> float:
    """How long the RSS growth is measured over (the run after its warm-up)."""
    return max(0.0, end - warm_up_end(start, end))


def rss_change_mb(samples: Sequence[ResourceSample], start: float, end: float) -> float | None:
    """RSS at the end minus RSS when the warm-up ended (the raw change behind the slope)."""
    inside = window(samples, warm_up_end(start, end), end)
    return inside[-1].rss_mb - inside[0].rss_mb if len(inside) >= 2 else None


@dataclass(frozen=True)
class Floor:
    limit: float
    rule: str


def floors(period_ms: float, fade_ms: float, import_s: float | None) -> dict[str, Floor]:
    """The latency and memory goals for EdgeVoice on the benchmark machine (checked at p99)."""
    table = {
        "capture_to_wire_ms": Floor(3.0, "p99 <= 3 ms"),
        "release_to_activity_end_ms": Floor(
            period_ms + 5, f"p99 <= one period + 5 ms ({period_ms + 5:g} ms)"
        ),
        "reply_to_speaker_ms": Floor(5.0, "p99 <= 5 ms"),
        "first_sound_ms": Floor(45.0, "p99 <= 45 ms"),
        "barge_in_ms": Floor(
            period_ms + fade_ms, f"p99 <= one period + fade ({period_ms + fade_ms:g} ms)"
        ),
        "reconnect_ms": Floor(300.0, "p99 <= 300 ms"),
        "goaway_gap_ms": Floor(300.0, "p99 <= 300 ms"),
        "cpu_percent": Floor(2.0, "<= 2 % of one core"),
        "idle_cpu_percent": Floor(0.5, "<= 0.5 % of one core"),
        "rss_steady_mb": Floor(100.0, "<= 100 MB"),
        "rss_growth_mb": Floor(2.0, "<= 2 MB per 10 min"),
    }
    if import_s is not None:
        table["startup_s"] = Floor(1.5 * import_s, f"<= 1.5 x import time ({1.5 * import_s:.2f} s)")
    return table


# With two CPU-bound processes competing for the cores.
LOADED_FLOORS = {
    "capture_to_wire_ms": Floor(10.0, "p99 <= 10 ms"),
    "barge_in_ms": Floor(25.0, "p99 <= 25 ms"),
}


def verdict(figure: Figure | None, floor: Floor | None) -> bool | None:
    if figure is None or floor is None:
        return None
    return figure["p99"] <= floor.limit


def ratio(reference: Figure | None, edgevoice: Figure | None) -> float | None:
    """How many times the reference's p99 is EdgeVoice's (above 1: EdgeVoice does better)."""
    if reference is None or edgevoice is None or edgevoice["p99"] <= 0 or reference["p99"] < 0:
        return None
    return round(reference["p99"] / edgevoice["p99"], 3)
