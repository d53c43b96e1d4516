"""Latency samples recorded at the edges of the daemon, for the benchmark.

The daemon always holds a probe; the default one records nothing and costs one method
call. No clock reads or logging happen here: callers pass the figures in.
"""

from __future__ import annotations

from collections import defaultdict


class Probe:
    """Collects named series of samples (milliseconds unless the name says otherwise)."""

    enabled = True

    def __init__(self) -> None:
        self.series: dict[str, list[float]] = defaultdict(list)

    def add(self, name: str, value: float) -> None:
        self.series[name].append(value)


class NullProbe(Probe):
    enabled = False

    def add(self, name: str, value: float) -> None:
        pass
