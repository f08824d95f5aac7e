import collections
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from profiler.errors import DeviceFault
from profiler.latency.table import LatencyTable
from profiler.measure.cli_profile import build_parser, main, make_space
from profiler.measure.devices import register_device
from profiler.measure.devices.base import BenchmarkSettings, Device, Measurement
from profiler.measure.model_builder import build_model
from profiler.measure.rawlog import read_records
from profiler.measure.sweep import PASSES, measurements_of

TINY = ["--device", "host", "--space", "quick", "--resolutions", "4", "--kernels", "1,3", "--strides", "1",
        "--samples-per-condition", "3", "--ops", "ADD,MEAN", "--networks", "1", "--warmup", "2",
        "--pass-gap", "0"]


def _expected_passes(argv: list[str]) -> dict[str, int]:
    """Each probe's id and how many times a finished sweep has measured it."""
    args = build_parser().parse_args(argv)
    return {p.config_hash(): measurements_of(p, PASSES) for p in make_space(args).probes(args.seed)}


@pytest.fixture(scope="module")
def tiny_models(model_cache):
    """The shared model cache with the tiny space's models built, so that the killed sweeps spend their time
    measuring."""
    args = build_parser().parse_args(TINY)
    space = make_space(args)
    for probe in [*space.probes(args.seed), space.reference]:
        build_model(probe, model_cache)
    return model_cache


def _cli(argv: list[str], cwd: Path) -> subprocess.Popen:
    # faulthandler: a CLI that hangs is made to print every thread's stack (SIGABRT) before the test fails
    return subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "profiler.measure.cli_profile", *argv],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout_s: float) -> str:
    """The CLI's stderr once it exits; a CLI still running after timeout_s is aborted and the test fails with the
    stacks of its threads (and no process is left behind)."""
    try:
        return proc.communicate(timeout=timeout_s)[1]
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        err = proc.communicate()[1]
        pytest.fail(f"the CLI did not exit within {timeout_s:g} s of Ctrl-C; its threads:\n{err[-6000:]}")


def _workers_of(parent_pid: int, wait_s: float = 5.0) -> list[int]:
    """Host runtime workers started by `parent_pid` that are still alive after up to wait_s seconds."""
    deadline = time.time() + wait_s
    while True:
        alive = []
        for proc in Path("/proc").iterdir():
            try:
                args = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"profiler.measure.devices.host" in args and args[-2:-1] == [str(parent_pid).encode()]:
                alive.append(int(proc.name))
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.05)


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_logs_every_configuration_once_per_pass(tmp_path, tiny_models):
    # a thousand runs: each measurement lasts milliseconds, so a kill may land inside one
    argv = [*TINY, "--runs", "1000", "--out", str(tmp_path / "host.json"), "--cache-dir", str(tiny_models)]
    log = tmp_path / "host.raw.jsonl"

    def measured() -> int:
        return sum(r["kind"] != "reference" for r in read_records(log))

    rng = random.Random(7)
    total = sum(_expected_passes(argv).values())
    counts = []
    for target in sorted(rng.sample(range(1, total - 8), 4)):
        proc = _cli(argv, tmp_path)
        deadline = time.time() + 120
        while measured() < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.02))  # then a random moment: mid-measurement, mid-append or between
        proc.kill()
        proc.communicate()
        counts.append(measured())  # the log must parse after every kill
        assert _workers_of(proc.pid) == [], "a killed sweep left its runtime worker behind"
    final = _cli(argv, tmp_path)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    ids = [r["id"] for r in read_records(log) if r["kind"] != "reference"]
    assert collections.Counter(ids) == _expected_passes(argv)
    assert counts == sorted(counts) and 0 < counts[-1] < len(ids), counts  # the kills did land mid-sweep
    table = LatencyTable.load(tmp_path / "host.json")
    assert table.raw_log_file is not None
    assert f"measured {len(ids) - counts[-1]}" in out


def test_without_out_the_table_is_named_after_this_machine(tmp_path, tiny_models, monkeypatch):
    from profiler.measure.devices.base import identity_name
    from profiler.measure.devices.host import HostDevice

    monkeypatch.chdir(tmp_path)
    assert main([*TINY, "--runs", "3", "--cache-dir", str(tiny_models)]) == 0
    with HostDevice() as host:
        expected = tmp_path / "device_tables" / f"{identity_name(host.info())}.json"
    assert [p.name for p in (tmp_path / "device_tables").glob("*.json")] == [expected.name]
    assert expected.name.startswith("host-") and LatencyTable.load(expected).raw_log_file is not None


def test_same_command_again_resumes_and_finishes_at_once(tmp_path, tiny_models, capsys):
    argv = [*TINY, "--runs", "3", "--out", str(tmp_path / "host.json"), "--cache-dir", str(tiny_models)]
    assert main(argv) == 0
    first = capsys.readouterr().out
    n = len(read_records(tmp_path / "host.raw.jsonl"))
    started = time.time()
    assert main(argv) == 0
    assert time.time() - started < 10
    assert "measured 0, skipped" in capsys.readouterr().out and "skipped 0" in first
    assert len(read_records(tmp_path / "host.raw.jsonl")) == n
    doc = json.loads((tmp_path / "host.json").read_text())
    assert doc["table_version"] == 2 and doc["device"]["name"] == "host" and doc["settings"]["space"] == "quick"
    nets = [r for r in read_records(tmp_path / "host.raw.jsonl") if r["kind"] == "net"]
    assert {r["spec"]["family"] for r in nets} == {"vgg", "mbv2"}
    assert all(r["ops"][0]["ops"] == ["CONV_2D"] and r["ops"][-1]["op"] == "SOFTMAX" for r in nets)
    assert doc["network"] is None  # two calibration networks (and 4x4 convs only) are too few to fit one


@pytest.mark.slow
def test_ctrl_c_exits_130_with_the_log_intact_and_the_resume_command(tmp_path, tiny_models):
    # Enough runs that each 4x4 probe takes ~0.1 s and the rest of the sweep seconds, so Ctrl-C lands mid-sweep and
    # not after it, in the table build; the reference conv, measured first, takes ~10 s at this count.
    argv = [*TINY, "--runs", "20000", "--out", str(tmp_path / "host.json"), "--cache-dir", str(tiny_models)]
    proc = _cli(argv, tmp_path)
    deadline = time.time() + 120
    while (not any(r["kind"] != "reference" for r in read_records(tmp_path / "host.raw.jsonl"))
           and time.time() < deadline):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    # The measurement in flight finishes first: ~0.1 s here when the machine is quiet, but 80 s was seen with both
    # cores busy under `nice` (the sweep thread waiting on its worker, the main thread joining it: a stack dump)
    err = _finish(proc, 300)
    assert proc.returncode == 130
    assert "resume with: fgnas-profile --device host" in _last_line(err)
    assert "Traceback" not in err
    assert read_records(tmp_path / "host.raw.jsonl")


@pytest.mark.parametrize("extra, message", [
    (["--device", "toaster"], "unknown device 'toaster'"),
    (["--space", "galaxy"], "unknown space 'galaxy'"),
    (["--serial", "emulator-5554"], "--serial is for phones"),
    (["--resolutions", "5"], "has no resolution [5]"),
    (["--kernels", "13"], "kernels must be in 1..11"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, message):
    argv = [*TINY, "--out", str(tmp_path / "t.json"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unwritable_output_is_exit_2(tmp_path, capsys):
    (tmp_path / "file").write_text("not a directory")
    assert main([*TINY, "--out", str(tmp_path / "file" / "host.json")]) == 2
    assert "cannot write to" in capsys.readouterr().err


def test_corrupted_raw_log_line_is_exit_2_naming_the_line(tmp_path, tiny_models, capsys):
    log = tmp_path / "host.raw.jsonl"
    good = {"v": 1, "kind": "conv", "id": "x", "spec": {}, "m": {}, "device": "host", "serial": None, "t": 0}
    log.write_text(json.dumps(good) + "\n" + "{garbage\n" + json.dumps(good) + "\n")
    assert main([*TINY, "--out", str(tmp_path / "host.json"), "--cache-dir", str(tiny_models)]) == 2
    assert "host.raw.jsonl:2: corrupted raw-log line" in _last_line(capsys.readouterr().err)


class _Unplugged(Device):
    name = "test-unplugged"

    def info(self) -> dict:
        return {"name": self.name}

    def benchmark(self, model_path: Path, settings: BenchmarkSettings) -> Measurement:
        raise DeviceFault("device went away after 3 retries")


register_device("test-unplugged")(lambda **options: _Unplugged())


def test_device_fault_is_exit_3_with_the_resume_command(tmp_path, tiny_models, capsys):
    argv = [*TINY, "--device", "test-unplugged", "--out", str(tmp_path / "t.json"), "--cache-dir", str(tiny_models)]
    assert main(argv) == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert "every device failed" in lines[-2] and "device went away" in lines[-2]
    assert lines[-1].startswith("resume with: fgnas-profile --device host --space quick")
    assert "--device test-unplugged" in lines[-1]
