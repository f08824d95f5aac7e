"""Timing a set of models the way the sweep does: interleaved passes over all of them, the lowest median of each.

One median of a model on a busy or virtualised machine can move a lot from one measurement to the next, always
upwards (interference only adds time), and a freshly started machine runs its first seconds slow (how much, on this
project's machine: docs/benchmarks.md, "Measurement noise"). Measuring every
model in each of several passes, a pass apart, and keeping its lowest median removes both; the table is built the
same way (profiler.measure.sweep, profiler.latency.table.lowest_medians), so predictions and these measurements compare
like for like.
"""
from __future__ import annotations

import time
from pathlib import Path

from profiler.measure.devices.base import BenchmarkSettings, Device


def lowest_of_passes(device: Device, paths: list[Path], settings: BenchmarkSettings, passes: int,
                     gap_s: float = 0.0) -> list[float]:
    """The lowest of `passes` medians of each model, the passes interleaved (all models, then all again, ...) and
    `gap_s` seconds apart: a shared machine has slow spells of minutes, which passes back to back can fall into
    entirely, while the sweep's passes over a table's probes lie tens of minutes apart."""
    if passes < 1:
        raise ValueError("at least one pass is needed")
    lowest = [float("inf")] * len(paths)
    for done in range(passes):
        if done and gap_s > 0:
            time.sleep(gap_s)
        for i, path in enumerate(paths):
            lowest[i] = min(lowest[i], device.benchmark(path, settings).median_ms)
    return lowest
