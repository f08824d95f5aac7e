import os
import signal
import subprocess
import sys
import time

import pytest

from profiler.errors import DeviceFault, FgnasError
from profiler.measure.devices import create_device, device_names
from profiler.measure.devices.base import BenchmarkSettings
from profiler.measure.model_builder import build_model
from profiler.spec import ConvSpec

FAST = BenchmarkSettings(runs=5, warmup=1, timeout_s=30)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    return build_model(ConvSpec(16, 16, 16, 16, 3, 1, 1, "relu"), tmp_path_factory.mktemp("models"))


@pytest.fixture
def host():
    with create_device("host") as device:
        yield device


def test_host_is_registered_and_fingerprints_this_machine(host):
    assert "host" in device_names()
    info = host.info()
    assert info["name"] == "host" and info["runtime"] == "ai-edge-litert"
    assert info["runtime_version"] and info["cpu_model"] and info["os"]
    assert info["threads"] == 1 and info["affinity"] == [0]


def test_benchmark_returns_timed_runs_after_warmup(host, small_model):
    before = time.time()
    m = host.benchmark(small_model, BenchmarkSettings(runs=7, warmup=2))
    assert m.count == 7 and m.warmup == 2
    assert 0 < m.min_ms <= m.median_ms and m.std_ms >= 0
    assert before <= m.started_at <= m.finished_at <= time.time()


def test_worker_process_is_pinned_to_one_core(host, small_model):
    host.benchmark(small_model, FAST)
    assert host.worker_pid != os.getpid()
    assert os.sched_getaffinity(host.worker_pid) == {0}


def test_worker_killed_between_benchmarks_is_restarted_transparently(host, small_model):
    host.benchmark(small_model, FAST)
    first = host.worker_pid
    os.kill(first, signal.SIGKILL)
    time.sleep(0.1)
    assert host.benchmark(small_model, FAST).count == FAST.runs
    assert host.worker_pid not in (None, first)


def test_garbage_model_is_an_fgnas_error_and_the_device_keeps_working(host, small_model, tmp_path):
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(FgnasError, match="LiteRT cannot run .*garbage.tflite"):
        host.benchmark(garbage, FAST)
    assert host.benchmark(small_model, FAST).count == FAST.runs


def test_hanging_runtime_is_killed_retried_then_a_device_fault(small_model, tmp_path):
    big = build_model(ConvSpec(56, 56, 96, 96, 5, 1, 1, "relu"), tmp_path)
    with create_device("host") as host:
        host.retries = 1
        started = time.time()
        with pytest.raises(DeviceFault, match="failed 2 times.*no answer within 0.05 s"):
            host.benchmark(big, BenchmarkSettings(runs=100000, warmup=0, timeout_s=0.05))
        assert time.time() - started < 10
        assert host.worker_pid is None
        assert host.benchmark(small_model, FAST).count == FAST.runs


def test_host_refuses_phone_options():
    with pytest.raises(FgnasError, match="--serial is for phones"):
        create_device("host", serial="emulator-5554")
    with pytest.raises(FgnasError, match="--benchmark-binary is for phones"):
        create_device("host", benchmark_binary="/data/local/tmp/benchmark_model")


def test_unknown_device_names_the_choices():
    with pytest.raises(FgnasError, match="unknown device 'toaster'.*host"):
        create_device("toaster")


def test_host_device_does_not_import_tensorflow():
    code = "import sys, profiler.measure.devices.host; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
