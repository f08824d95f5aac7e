"""Read the text that TFLite's `benchmark_model` prints, in every format it has printed over its versions.

A pure function of text (no device, no files), so every variant is tested against a fixture. The variants, oldest
first (the shapes come from the tool's sources: tensorflow/lite/tools/benchmark/benchmark_model.cc, tools/logging.h
and the Stat printer of tensorflow/core/util/stats_calculator.h):

- `2018`: "Running benchmark for N iterations", summary `Average inference timings in us: Warmup: W, Init: I,
  no stats: A`.
- `2019`: "Running benchmark for at least N iterations and at least S seconds ...", the same summary, where later
  builds (and the Android benchmark app) print `Inference: A` instead of `no stats: A`.
- `2020`: `Inference timings in us: Init: I, First inference: F, Warmup (avg): W, Inference (avg): A` and
  `Peak memory footprint (MB): init=X overall=Y`.
- `current` (TFLite 2.4+ and LiteRT): the same lines behind an `INFO: ` prefix, with
  `Memory footprint delta from the start of the tool (MB): init=X overall=Y` and optionally
  `Overall peak memory footprint (MB) via periodic monitoring: Z`.

Every variant prints one `count=... first=... curr=... min=... max=... avg=... std=...` line for the warm-up runs and
one for the timed runs; a Stat whose values are all equal prints `count=N curr=X(all same)` (or `count=1 curr=X`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from profiler.errors import FgnasError

# "INFO: " (tools/logging.h) or the glog-style prefix of 2018 builds ("2018-09-10 12:36:37.57: I path.cc:361] ").
_PREFIX = re.compile(r"^(?:(?:INFO|WARN|WARNING|ERROR|FATAL): |\d{4}-\d\d-\d\d [\d:.]+: [IWEF] \S+:\d+\] )")
_NUMBER = r"(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)"
_STAT_FIELD = re.compile(r"(count|first|curr|min|max|avg|std)=" + _NUMBER + r"(\(all same\))?")
_CURRENT_SUMMARY = re.compile(
    r"Inference timings in us: Init: " + _NUMBER + r", First inference: " + _NUMBER
    + r", Warmup \(avg\): " + _NUMBER + r", Inference \(avg\): " + _NUMBER)
_OLD_SUMMARY = re.compile(
    r"Average inference timings in us: Warmup: " + _NUMBER + r", Init: " + _NUMBER
    + r", (?:no stats|Inference): " + _NUMBER)
_MEMORY_2020 = re.compile(r"Peak memory footprint \(MB\): init=" + _NUMBER + r" overall=" + _NUMBER)
_MEMORY_DELTA = re.compile(
    r"Memory footprint delta from the start of the tool \(MB\): init=" + _NUMBER + r" overall=" + _NUMBER)
_MEMORY_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: " + _NUMBER)
_MODEL_SIZE = re.compile(r"The input model file size \(MB\): " + _NUMBER)
_OLD_RUN_HEADER = re.compile(r"Running benchmark for \d+ iterations")


class BenchmarkOutputError(FgnasError):
    """The text is not a finished benchmark_model run (it crashed, was cut off, or is not that tool)."""


@dataclass(frozen=True)
class RunStats:
    """One `count=...` line: statistics of a series of runs, in microseconds."""

    count: int
    first_us: float
    curr_us: float
    min_us: float
    max_us: float
    avg_us: float
    std_us: float


@dataclass(frozen=True)
class BenchmarkOutput:
    """What one benchmark_model run reported. Times in microseconds, memory in MB (None: that build did not say)."""

    variant: str
    init_us: float
    warmup: RunStats
    inference: RunStats
    first_inference_us: float
    warmup_avg_us: float
    inference_avg_us: float
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    peak_memory_mb: float | None = None
    model_size_mb: float | None = None


def parse_run_stats(line: str) -> RunStats:
    """Parse a Stat line (`count=...`), including the `curr=X(all same)` and `count=1 curr=X` forms."""
    fields = {m.group(1): float(m.group(2)) for m in _STAT_FIELD.finditer(line)}
    if "count" not in fields or "curr" not in fields:
        raise BenchmarkOutputError(f"not a benchmark_model stat line: {line.strip()!r}")
    count = int(fields["count"])
    if set(fields) == {"count", "curr"}:  # all runs took the same time: the tool prints only the value
        value = fields["curr"]
        return RunStats(count, value, value, value, value, value, 0.0)
    missing = {"first", "min", "max", "avg", "std"} - set(fields)
    if missing:
        raise BenchmarkOutputError(f"stat line lacks {', '.join(sorted(missing))}: {line.strip()!r}")
    return RunStats(count, fields["first"], fields["curr"], fields["min"], fields["max"], fields["avg"], fields["std"])


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    """Parse the full stdout+stderr of one benchmark_model run. Raises BenchmarkOutputError when it did not finish."""
    stats: list[RunStats] = []
    current = old = None
    summary_prefixed = old_run_header = False
    memory_2020 = memory_delta = peak = size = None
    errors: list[str] = []
    for raw in text.splitlines():
        line = _PREFIX.sub("", raw.rstrip(), count=1)
        if line.startswith("count="):
            stats.append(parse_run_stats(line))
        elif m := _CURRENT_SUMMARY.search(line):
            current, summary_prefixed = m, raw.startswith("INFO: ")
        elif m := _OLD_SUMMARY.search(line):
            old = m
        elif m := _MEMORY_DELTA.search(line):
            memory_delta = m
        elif m := _MEMORY_2020.search(line):
            memory_2020 = m
        elif m := _MEMORY_PEAK.search(line):
            peak = float(m.group(1))
        elif m := _MODEL_SIZE.search(line):
            size = float(m.group(1))
        elif _OLD_RUN_HEADER.search(line):
            old_run_header = True
        elif raw.startswith(("ERROR: ", "FATAL: ")) or "failed" in line.lower():
            errors.append(line.strip())
    if current is None and old is None:
        why = f": {errors[0]}" if errors else " (no 'Inference timings' summary line)"
        raise BenchmarkOutputError(f"benchmark_model did not finish{why}")
    if len(stats) < 2:
        raise BenchmarkOutputError(f"expected a warm-up and a timed stat line, found {len(stats)}")
    warmup, inference = stats[0], stats[1]
    memory = memory_delta or memory_2020
    mem_init, mem_overall = (float(memory.group(1)), float(memory.group(2))) if memory else (None, None)
    if current is not None:
        init, first, warm_avg, inf_avg = (float(g) for g in current.groups())
        variant = "current" if summary_prefixed else "2020"
    else:
        warm_avg, init, inf_avg = (float(g) for g in old.groups())
        first = warmup.first_us
        variant = "2018" if old_run_header else "2019"
    return BenchmarkOutput(variant, init, warmup, inference, first, warm_avg, inf_avg,
                           mem_init, mem_overall, peak, size)
