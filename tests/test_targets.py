import pytest

from profiler.errors import FgnasError
from search.targets import Target, format_resource, parse_target


@pytest.mark.parametrize("text, expected", [
    ("53ms", Target("latency", 53.0)),
    ("0.5ms", Target("latency", 0.5)),
    ("250us", Target("latency", 0.25)),
    ("150MFLOPs", Target("flops", 150e6)),
    ("1.2GFLOPs", Target("flops", 1.2e9)),
    ("41MMACs", Target("flops", 82e6)),
    ("2.7Mparams", Target("params", 2.7e6)),
    ("900Kparams", Target("params", 900e3)),
    (" 12 ms ", Target("latency", 12.0)),
])
def test_parse_target_reads_number_and_unit_into_base_units(text, expected):
    got = parse_target(text)
    assert got.resource == expected.resource
    assert got.value == pytest.approx(expected.value)


@pytest.mark.parametrize("text", ["53", "ms", "53 parsecs", "5Mms", "1.2gflops", "-3ms", "0ms", ""])
def test_parse_target_rejects_unreadable_or_non_positive_text(text):
    with pytest.raises(FgnasError):
        parse_target(text)


def test_milli_and_mega_are_not_confused():
    assert parse_target("5ms").resource == "latency"
    assert parse_target("5Mparams").value == 5e6


def test_format_resource_round_trips_through_parse():
    for resource, value in [("latency", 5.31), ("flops", 40.6e6), ("params", 0.27e6), ("flops", 1.2e9)]:
        text = format_resource(resource, value)
        back = parse_target(text)
        assert back.resource == resource
        assert back.value == pytest.approx(value, rel=1e-2)


def test_relative_target_is_a_share_of_the_unpruned_network():
    target = parse_target("60%latency")
    assert target.relative and target.resource == "latency" and str(target) == "60%latency"
    resolved = target.resolve(2.5)
    assert resolved == Target("latency", 1.5) and not resolved.relative


@pytest.mark.parametrize("text", ["0%latency", "101%flops", "60%speed"])
def test_relative_target_outside_0_100_or_of_unknown_resource_is_refused(text):
    with pytest.raises(FgnasError):
        parse_target(text)
