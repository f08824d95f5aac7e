"""Statistics of the CI gate: paired model/reference ratios, confidence intervals and the pass/fail rules.

Ratios are handled as logarithms: log(model / reference) is symmetric around "no change", differences of logs are
ratios of ratios, and the exponential maps an interval back. Two interval methods are registered: Student's t on the
mean (Welch's for a difference) and a seeded percentile bootstrap of the median, which ignores a few disturbed pairs.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from profiler.errors import FgnasError

BOOTSTRAP_RESAMPLES = 4000


def _t_quantile(p: float, df: float) -> float:
    from scipy import stats  # imported here: scipy.stats takes seconds to import and only the t method needs it

    return float(stats.t.ppf(p, df))


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str

    def map(self, fn: Callable[[float], float]) -> Interval:
        """The interval of a monotonically increasing function of the quantity (exp, x - 1, ...)."""
        return Interval(fn(self.estimate), fn(self.low), fn(self.high), self.confidence, self.method)

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "confidence": self.confidence,
                "method": self.method}


def _check(values: Sequence[float], confidence: float, name: str) -> None:
    if len(values) < 2:
        raise FgnasError(f"{name} needs at least 2 measurements, got {len(values)}: raise --pairs")
    if not 0 < confidence < 1:
        raise FgnasError(f"confidence must be between 0 and 1, got {confidence}")


def t_interval(values: Sequence[float], confidence: float) -> Interval:
    """Mean of `values` with Student's t interval."""
    _check(values, confidence, "a t interval")
    n = len(values)
    mean = statistics.fmean(values)
    half = _t_quantile((1 + confidence) / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, confidence, "t")


def t_difference_interval(a: Sequence[float], b: Sequence[float], confidence: float) -> Interval:
    """mean(a) - mean(b) with Welch's t interval (unequal variances, Welch-Satterthwaite degrees of freedom)."""
    _check(a, confidence, "a t interval")
    _check(b, confidence, "a t interval")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if va + vb == 0:
        return Interval(diff, diff, diff, confidence, "t")
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = _t_quantile((1 + confidence) / 2, df) * math.sqrt(va + vb)
    return Interval(diff, diff - half, diff + half, confidence, "t")


def _bootstrap_medians(values: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    data = np.asarray(values, dtype=float)
    return np.median(data[rng.integers(0, len(data), (BOOTSTRAP_RESAMPLES, len(data)))], axis=1)


def _percentiles(resampled: np.ndarray, confidence: float) -> tuple[float, float]:
    low, high = np.quantile(resampled, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def bootstrap_interval(values: Sequence[float], confidence: float, seed: int = 0) -> Interval:
    """Median of `values` with a percentile bootstrap interval (seeded: the same data give the same interval)."""
    _check(values, confidence, "a bootstrap interval")
    low, high = _percentiles(_bootstrap_medians(values, np.random.default_rng(seed)), confidence)
    return Interval(statistics.median(values), low, high, confidence, "bootstrap")


def bootstrap_difference_interval(a: Sequence[float], b: Sequence[float], confidence: float,
                                  seed: int = 0) -> Interval:
    """median(a) - median(b), each resampled independently."""
    _check(a, confidence, "a bootstrap interval")
    _check(b, confidence, "a bootstrap interval")
    rng = np.random.default_rng(seed)
    low, high = _percentiles(_bootstrap_medians(a, rng) - _bootstrap_medians(b, rng), confidence)
    return Interval(statistics.median(a) - statistics.median(b), low, high, confidence, "bootstrap")


@dataclass(frozen=True)
class IntervalMethod:
    one_sample: Callable[[Sequence[float], float], Interval]
    difference: Callable[[Sequence[float], Sequence[float], float], Interval]


INTERVAL_METHODS: dict[str, IntervalMethod] = {
    "t": IntervalMethod(t_interval, t_difference_interval),
    "bootstrap": IntervalMethod(bootstrap_interval, bootstrap_difference_interval),
}


def interval_method(name: str) -> IntervalMethod:
    if name not in INTERVAL_METHODS:
        raise FgnasError(f"unknown interval method {name!r}: choose one of {', '.join(INTERVAL_METHODS)}")
    return INTERVAL_METHODS[name]


def log_ratios(model_ms: Sequence[float], reference_ms: Sequence[float]) -> list[float]:
    """log(model / reference) of each interleaved pair."""
    if len(model_ms) != len(reference_ms):
        raise ValueError(f"{len(model_ms)} model and {len(reference_ms)} reference measurements do not pair up")
    return [math.log(m / r) for m, r in zip(model_ms, reference_ms)]


def ratio_interval(pair_log_ratios: Sequence[float], confidence: float, method: str) -> Interval:
    """The model/reference latency ratio with its interval."""
    return interval_method(method).one_sample(pair_log_ratios, confidence).map(math.exp)


def change_interval(current: Sequence[float], baseline: Sequence[float], confidence: float,
                    method: str) -> Interval:
    """Relative change of the ratio against the baseline's (0.05 = 5% slower), from both runs' per-pair log ratios.

    The baseline's own noise widens the interval rather than being taken as exact.
    """
    return interval_method(method).difference(current, baseline, confidence).map(lambda d: math.exp(d) - 1)


def latency_interval(samples_ms: Sequence[float], confidence: float, method: str) -> Interval:
    return interval_method(method).one_sample(samples_ms, confidence)


def is_regression(change: Interval, tolerance: float) -> bool:
    """A regression is declared only when the whole interval lies above the tolerance: noise alone cannot fail CI."""
    return change.low > tolerance


def is_undecided(change: Interval, tolerance: float) -> bool:
    """The interval straddles the tolerance: more pairs may prove a regression that is there, or rule it out."""
    return change.low <= tolerance < change.high


def is_within_budget(latency: Interval, budget_ms: float) -> bool:
    """Within budget only when the noise margin (the interval's upper end) is too: noise alone cannot pass it."""
    return latency.high <= budget_ms
