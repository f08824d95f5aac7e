"""The benchmark_model parser against one fixture per output format the tool has printed."""
from pathlib import Path

import pytest

from profiler.measure.benchmark_output import BenchmarkOutputError, RunStats, parse_benchmark_output, parse_run_stats

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"


def parse(name: str):
    return parse_benchmark_output((FIXTURES / name).read_text())


def test_2018_format_reads_no_stats_summary_and_single_warmup_run():
    out = parse("2018_no_stats.txt")
    assert out.variant == "2018"
    assert out.init_us == 4452
    assert out.warmup == RunStats(1, 14616, 14616, 14616, 14616, 14616, 0.0)
    assert out.inference == RunStats(50, 13779, 13725, 13707, 14341, 13772.2, 89)
    assert out.inference_avg_us == 13772.2
    assert out.warmup_avg_us == 14616
    assert out.first_inference_us == 14616  # the old summary has no "First inference"; it is the first warm-up run
    assert out.memory_overall_mb is None


def test_2019_format_reads_min_seconds_runs():
    out = parse("2019_no_stats.txt")
    assert out.variant == "2019"
    assert (out.init_us, out.warmup_avg_us, out.inference_avg_us) == (896, 2331.42, 2177.1)
    assert out.warmup.count == 215 and out.inference.count == 459
    assert out.first_inference_us == 12231


def test_2019_inference_spelling_and_all_same_warmup():
    out = parse("2019_inference_all_same.txt")
    assert out.variant == "2019"
    assert out.inference_avg_us == pytest.approx(40.6333)
    assert out.warmup == RunStats(3, 41, 41, 41, 41, 41, 0.0)
    assert out.inference.std_us == 1


def test_2020_format_reads_first_inference_and_peak_memory():
    out = parse("2020_peak_memory.txt")
    assert out.variant == "2020"
    assert (out.init_us, out.first_inference_us, out.warmup_avg_us, out.inference_avg_us) == (
        12874, 5821, 3650.72, 3585.13)
    assert (out.memory_init_mb, out.memory_overall_mb) == (3.35938, 4.10547)
    assert out.model_size_mb == 0.075392
    assert out.inference == RunStats(279, 3478, 3561, 3380, 4329, 3585.13, 120)


def test_current_format_strips_info_prefix_and_reads_memory_lines():
    out = parse("current_info_prefixed.txt")
    assert out.variant == "current"
    assert out.inference == RunStats(30, 1797, 1812, 1760, 1968, 1801.97, 37)
    assert out.warmup.count == 5
    assert (out.memory_init_mb, out.memory_overall_mb, out.peak_memory_mb) == (4.12109, 5.37891, 9.19531)
    assert out.init_us == 18031


def test_current_format_all_same_timed_runs_have_zero_spread():
    out = parse("current_all_same.txt")
    assert out.warmup == RunStats(1, 9, 9, 9, 9, 9, 0.0)
    assert out.inference == RunStats(4, 3, 3, 3, 3, 3, 0.0)
    assert out.peak_memory_mb is None


def test_failed_run_raises_with_the_tools_error_line():
    with pytest.raises(BenchmarkOutputError, match="Could not open"):
        parse("failed_missing_graph.txt")


def test_truncated_output_raises():
    with pytest.raises(BenchmarkOutputError, match="did not finish"):
        parse("truncated_mid_run.txt")


def test_stat_line_with_scientific_average():
    stats = parse_run_stats("count=2 first=1234567 curr=1234569 min=1234567 max=1234569 avg=1.23457e+06 std=1")
    assert stats.avg_us == 1.23457e6


def test_stat_line_missing_fields_is_refused():
    with pytest.raises(BenchmarkOutputError, match="lacks"):
        parse_run_stats("count=5 first=1 curr=2")


def test_glog_prefixed_lines_are_read():
    text = (FIXTURES / "2018_no_stats.txt").read_text().splitlines()
    prefixed = "\n".join(f"2018-09-10 12:36:37.571102: I tensorflow/lite/tools/benchmark/benchmark_model.cc:91] {line}"
                         for line in text)
    assert parse_benchmark_output(prefixed).inference_avg_us == 13772.2


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.txt")))
def test_every_fixture_is_covered_by_a_named_test(name):
    assert name in Path(__file__).read_text()
