import argparse

import pytest

from profiler.errors import FgnasError
from profiler.measure.devices import (
    add_device_arguments,
    add_timing_arguments,
    create_device,
    device_names,
    device_options,
    timing_settings,
)
from profiler.measure.devices.base import BenchmarkSettings


def _parse(argv, **kwargs):
    parser = argparse.ArgumentParser()
    add_device_arguments(parser, **kwargs)
    return parser.parse_args(argv)


def test_only_given_phone_options_reach_create_device():
    assert device_options(_parse(["--device", "host"])) == {}
    args = _parse(["--device", "pixel1", "--serial", "127.0.0.1:5555", "--benchmark-binary", "/tmp/bm", "--force"])
    assert device_options(args) == {"serial": "127.0.0.1:5555", "benchmark_binary": "/tmp/bm", "force": True}


def test_a_farm_keeps_its_serials_for_the_caller():
    args = _parse(["--device", "pixel1", "--serial", "a", "--serial", "b"], farm=True)
    assert args.serial == ["a", "b"] and device_options(args) == {}


def test_device_is_required_unless_a_default_is_given():
    with pytest.raises(SystemExit):
        _parse([])
    assert _parse([], default="host").device == "host"


def test_unknown_device_names_the_known_ones():
    with pytest.raises(FgnasError, match="unknown device 'toaster'.*host.*pixel1"):
        create_device("toaster")
    assert {"host", "pixel1", "galaxy-s8", "emulator", "android"} <= set(device_names())


def _timing(argv):
    parser = argparse.ArgumentParser()
    add_timing_arguments(parser)
    return parser.parse_args(argv)


def test_timing_not_given_comes_from_the_device_and_given_timing_overrides_it():
    phone = BenchmarkSettings(threads=1, runs=50, warmup=10)
    assert timing_settings(_timing([]), phone) == phone
    assert timing_settings(_timing(["--warmup", "3"]), phone) == BenchmarkSettings(threads=1, runs=50, warmup=3)
    assert timing_settings(_timing(["--runs", "7", "--threads", "2"])) == BenchmarkSettings(threads=2, runs=7)


@pytest.mark.parametrize("argv", [["--runs", "0"], ["--threads", "0"], ["--warmup", "-1"]])
def test_timing_out_of_range_is_bad_input(argv):
    with pytest.raises(FgnasError, match="--runs and --threads must be at least 1"):
        timing_settings(_timing(argv))

