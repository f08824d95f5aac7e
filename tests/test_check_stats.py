"""The CI gate's statistics against hand-computed values."""
import math

import pytest

from profiler.errors import FgnasError
from profiler.gate.check_stats import (
    Interval,
    bootstrap_difference_interval,
    bootstrap_interval,
    change_interval,
    interval_method,
    is_regression,
    is_undecided,
    is_within_budget,
    latency_interval,
    log_ratios,
    ratio_interval,
    t_difference_interval,
    t_interval,
)

T_975_DF4 = 2.7764451051977987  # Student's t 97.5% quantile, 4 degrees of freedom (tables: 2.776)


def test_t_interval_of_one_to_five():
    # mean 3, sd sqrt(2.5), se sqrt(2.5)/sqrt(5) = sqrt(0.5), half-width 2.776 * 0.7071 = 1.9632
    iv = t_interval([1, 2, 3, 4, 5], 0.95)
    assert iv.estimate == 3
    assert iv.low == pytest.approx(3 - T_975_DF4 * math.sqrt(0.5))
    assert iv.high == pytest.approx(3 + T_975_DF4 * math.sqrt(0.5))
    assert iv.high - iv.estimate == pytest.approx(1.96324, abs=1e-5)


def test_welch_difference_with_equal_variances_has_pooled_degrees_of_freedom():
    # var 1 each, se^2 = 1/3 + 1/3, Welch df = (2/3)^2 / (2 * (1/3)^2 / 2) = 4
    iv = t_difference_interval([1, 2, 3], [2, 3, 4], 0.95)
    assert iv.estimate == -1
    assert (iv.low, iv.high) == pytest.approx((-1 - T_975_DF4 * math.sqrt(2 / 3), -1 + T_975_DF4 * math.sqrt(2 / 3)))


def test_difference_of_constant_samples_is_exact():
    iv = t_difference_interval([2.0, 2.0], [1.5, 1.5], 0.95)
    assert (iv.estimate, iv.low, iv.high) == (0.5, 0.5, 0.5)


def test_bootstrap_interval_is_the_median_and_ignores_an_outlier():
    values = [1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 1.01, 0.99, 1.0, 50.0]
    iv = bootstrap_interval(values, 0.95)
    assert iv.estimate == 1.0 and iv.method == "bootstrap"
    assert 0.98 <= iv.low <= 1.0 <= iv.high <= 1.02
    assert t_interval(values, 0.95).high > 10  # the mean's interval is blown up by the one disturbed value


def test_bootstrap_is_seeded_and_collapses_on_identical_values():
    values = [3.0, 1.0, 2.0, 5.0, 4.0]
    assert bootstrap_interval(values, 0.9) == bootstrap_interval(values, 0.9)
    iv = bootstrap_interval([2.0] * 6, 0.95)
    assert (iv.estimate, iv.low, iv.high) == (2.0, 2.0, 2.0)
    diff = bootstrap_difference_interval([3.0] * 4, [1.0] * 5, 0.95)
    assert (diff.estimate, diff.low, diff.high) == (2.0, 2.0, 2.0)


def test_log_ratios_pair_model_with_reference():
    assert log_ratios([2.0, 4.0], [1.0, 2.0]) == pytest.approx([math.log(2), math.log(2)])
    with pytest.raises(ValueError):
        log_ratios([1.0, 2.0], [1.0])


@pytest.mark.parametrize("method", ["t", "bootstrap"])
def test_ratio_and_change_map_back_from_logs(method):
    base = log_ratios([1.0, 1.02, 0.98, 1.0], [2.0, 2.0, 2.0, 2.0])
    slower = [v + math.log(1.1) for v in base]  # every pair exactly 10% slower
    ratio = ratio_interval(base, 0.95, method)
    assert ratio.low <= ratio.estimate <= ratio.high and ratio.estimate == pytest.approx(0.5, rel=0.011)
    change = change_interval(slower, base, 0.95, method)
    assert change.estimate == pytest.approx(0.10)
    assert change.low < 0.10 < change.high


def test_regression_only_when_the_whole_interval_is_above_tolerance():
    assert is_regression(Interval(0.12, 0.06, 0.18, 0.95, "t"), 0.05)
    assert not is_regression(Interval(0.12, 0.04, 0.20, 0.95, "t"), 0.05)
    assert not is_regression(Interval(0.05, 0.05, 0.05, 0.95, "t"), 0.05)  # exactly at the tolerance passes


@pytest.mark.parametrize("low, high, undecided", [(0.01, 0.09, True), (0.06, 0.09, False), (-0.02, 0.05, False)])
def test_undecided_when_the_interval_straddles_the_tolerance(low, high, undecided):
    assert is_undecided(Interval((low + high) / 2, low, high, 0.95, "t"), 0.05) is undecided


def test_budget_needs_the_upper_end_within():
    assert is_within_budget(Interval(50.0, 48.0, 53.0, 0.95, "t"), 53.0)
    assert not is_within_budget(Interval(50.0, 47.0, 53.5, 0.95, "t"), 53.0)


def test_latency_interval_uses_the_named_method():
    assert latency_interval([1.0, 2.0, 3.0, 4.0, 5.0], 0.95, "t").estimate == 3.0
    assert latency_interval([1.0, 2.0, 3.0, 4.0, 100.0], 0.95, "bootstrap").estimate == 3.0


def test_bad_requests_are_user_errors():
    with pytest.raises(FgnasError, match="unknown interval method 'z'"):
        interval_method("z")
    with pytest.raises(FgnasError, match="at least 2"):
        t_interval([1.0], 0.95)
    with pytest.raises(FgnasError, match="between 0 and 1"):
        bootstrap_interval([1.0, 2.0], 1.5)
