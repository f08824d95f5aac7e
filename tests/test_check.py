"""fgnas-check on the real host runtime (and a simulated phone speaking real ADB): verdicts, exit codes, reports."""
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from profiler.adb_sim import Faults
from profiler.errors import DeviceFault, FgnasError
from profiler.gate.check import CheckOptions, measure_pairs, run_check
from profiler.gate.check_baseline import load_baseline
from profiler.gate.cli_check import main, parse_duration_ms, parse_fraction
from profiler.measure.devices import create_device
from profiler.measure.devices.base import BenchmarkSettings, Device

FAST = BenchmarkSettings(runs=10, warmup=2, timeout_s=60)


class RecordingDevice(Device):
    """The real host device, with a log of what was benchmarked in which order."""

    def __init__(self, inner: Device):
        self.inner, self.name, self.calls = inner, inner.name, []

    def info(self):
        return self.inner.info()

    def prepare(self, model_paths):
        self.calls.append(("prepare", [Path(p).name for p in model_paths]))

    def benchmark(self, model_path, settings):
        self.calls.append(("benchmark", Path(model_path).name))
        return self.inner.benchmark(model_path, settings)


@pytest.fixture(scope="module")
def host():
    with create_device("host") as device:
        yield device


def _cli(models, *args):
    return main([*map(str, args), "--device", "host", "--cache-dir", str(models.cache), "--runs", "10",
                 "--warmup", "2"])


def test_pairs_interleave_model_and_reference_abba_after_a_discarded_warmup_pair(host, check_models):
    device = RecordingDevice(host)
    run = measure_pairs(device, check_models.demo, check_models.reference, FAST, 3, warmup_s=0.0)
    a, b = check_models.demo.name, check_models.reference.name
    assert device.calls == [("prepare", [a, b])] + [("benchmark", n) for n in [a, b, b, a, a, b, b, a]]
    assert len(run.model_ms) == len(run.reference_ms) == 3
    assert min(run.reference_ms) > 0 and min(run.model_ms) > 0


def test_warmup_lasts_its_time_however_fast_the_model(host, check_models):
    device = RecordingDevice(host)
    run = measure_pairs(device, check_models.demo, None, FAST, 2, warmup_s=0.5)
    assert run.seconds >= 0.5 and len(run.model_ms) == 2
    assert len(device.calls) - 1 > 1 + 2  # more warm-up invocations than the one pair a count alone would give


@pytest.mark.slow  # two checks, each warming up for 2 s
def test_budget_passes_when_the_upper_end_is_within_and_fails_otherwise(host, check_models):
    ok = run_check(host, check_models.demo, CheckOptions(budget_ms=1000.0, pairs=4, settings=FAST))
    assert ok.passed and ok.exit_code == 0 and ok.run.reference_ms == ()  # budget alone needs no reference
    latency = ok.to_dict()["checks"][0]["latency_ms"]
    assert latency["low"] <= latency["estimate"] <= latency["high"] <= 1000.0
    over = run_check(host, check_models.demo, CheckOptions(budget_ms=latency["low"] / 10, pairs=4, settings=FAST))
    assert not over.passed and over.exit_code == 1 and "> budget" in over.outcomes[0].message


@pytest.mark.slow
def test_recorded_baseline_passes_the_same_model_and_fails_a_much_slower_one(host, check_models, tmp_path):
    path = tmp_path / "baseline.json"
    record = CheckOptions(baseline=path, update_baseline=True, pairs=8, settings=FAST, cache_dir=check_models.cache)
    written = run_check(host, check_models.demo, record)
    assert written.passed and written.baseline_written == path and written.outcomes == ()
    assert len(load_baseline(path).model_ms) == 8
    compare = CheckOptions(baseline=path, pairs=8, max_pairs=8, settings=FAST, cache_dir=check_models.cache)
    same = run_check(host, check_models.demo, compare)
    assert same.passed and "byte-identical" in same.notes[0] and len(same.run.model_ms) == 8
    slower = run_check(host, check_models.slower, compare)
    change = slower.to_dict()["checks"][0]["change"]
    assert not slower.passed and change["low"] > 0.05 and change["estimate"] > 0.5


def test_baseline_of_another_cpu_is_refused_before_measuring(host, check_models, tmp_path):
    path = tmp_path / "baseline.json"
    run_check(host, check_models.demo, CheckOptions(baseline=path, update_baseline=True, pairs=2, settings=FAST,
                                                    cache_dir=check_models.cache))
    doc = json.loads(path.read_text())
    doc["device"]["cpu_model"] = "Some Other CPU"
    path.write_text(json.dumps(doc))
    device = RecordingDevice(host)
    with pytest.raises(FgnasError, match="recorded on another device \\(cpu_model: baseline 'Some Other CPU'"):
        run_check(device, check_models.demo, CheckOptions(baseline=path, settings=FAST, cache_dir=check_models.cache))
    assert device.calls == []
    with pytest.raises(FgnasError, match="settings.threads: baseline 1, here 2"):
        run_check(host, check_models.demo, CheckOptions(baseline=path, settings=BenchmarkSettings(threads=2)))


@pytest.mark.parametrize("options, message", [
    (CheckOptions(), "nothing to check"),
    (CheckOptions(budget_ms=5.0, update_baseline=True), "--update-baseline needs --baseline"),
    (CheckOptions(budget_ms=5.0, pairs=1), "--pairs must be at least 2"),
    (CheckOptions(budget_ms=-1.0), "--budget must be positive"),
    (CheckOptions(baseline=Path("b.json"), tolerance=5.0), "between 0% and 100%, e.g. 5%"),
])
def test_meaningless_options_are_user_errors(host, check_models, options, message):
    with pytest.raises(FgnasError, match=message):
        run_check(host, check_models.demo, options)


def test_budget_and_tolerance_texts():
    assert parse_duration_ms("53ms") == 53.0 and parse_duration_ms("800us") == 0.8
    assert parse_duration_ms("0.1s") == 100.0
    assert parse_fraction("5%") == pytest.approx(0.05) and parse_fraction("0.1") == 0.1


@pytest.mark.slow
def test_cli_exit_codes_and_reports(check_models, tmp_path, capsys):
    baseline, junit, report = tmp_path / "b.json", tmp_path / "junit.xml", tmp_path / "report.json"
    assert _cli(check_models, check_models.demo, "--baseline", baseline, "--update-baseline", "--pairs", "6",
                "--junit", junit) == 0
    recorded = ET.parse(junit).getroot()
    assert recorded.get("failures") == "0" and [c.get("name") for c in recorded.iter("testcase")] == ["update-baseline"]
    assert _cli(check_models, check_models.slower, "--baseline", baseline, "--tolerance", "5%", "--budget", "10s",
                "--pairs", "6", "--junit", junit, "--json", report) == 1
    out = capsys.readouterr().out
    assert "budget: PASS" in out and "baseline: FAIL" in out and out.rstrip().endswith("FAIL")
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "2" and root.get("failures") == "1"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["budget"].find("failure") is None
    assert cases["baseline"].find("failure").get("type") == "LatencyRegression"
    doc = json.loads(report.read_text())
    assert doc["status"] == "fail" and doc["exit_code"] == 1 and len(doc["measurements"]["model_ms"]) == 6
    assert [c["passed"] for c in doc["checks"]] == [True, False]


def test_cli_input_errors_exit_2_with_one_line_and_an_error_report(check_models, tmp_path, capsys):
    junit, report = tmp_path / "junit.xml", tmp_path / "r.json"
    assert _cli(check_models, tmp_path / "missing.tflite", "--budget", "5ms", "--junit", junit, "--json", report) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.tflite does not exist" in err
    error = ET.parse(junit).getroot().find("testsuite/testcase/error")
    assert error.get("type") == "FgnasError" and "does not exist" in error.get("message")
    assert json.loads(report.read_text())["status"] == "error"
    assert main([str(check_models.demo), "--device", "nokia3310", "--budget", "5ms"]) == 2
    assert "unknown device 'nokia3310'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([str(check_models.demo), "--device", "host", "--budget", "fast"])
    assert exit_.value.code == 2


@pytest.mark.slow  # two checks on a simulated phone: ~4 s
def test_phone_check_through_adb_records_and_passes(sims, adb_env, check_models, tmp_path):
    server = sims.start("pixel1")
    baseline = tmp_path / "pixel1.json"
    common = ["--device", "pixel1", "--serial", server.address, "--benchmark-binary", str(adb_env), "--cache-dir",
              str(check_models.cache), "--runs", "5", "--warmup", "1", "--pairs", "4"]
    assert main([str(check_models.demo), "--baseline", str(baseline), "--update-baseline", *common]) == 0
    assert load_baseline(baseline).fingerprint["model"] == "Pixel"
    assert main([str(check_models.demo), "--baseline", str(baseline), "--tolerance", "50%", *common]) == 0


def test_phone_that_keeps_dropping_is_a_device_fault_exit_3(sims, adb_env, check_models, capsys):
    server = sims.start("pixel1", Faults(drop_every=1))
    assert main([str(check_models.demo), "--device", "pixel1", "--serial", server.address, "--benchmark-binary",
                 str(adb_env), "--budget", "1s", "--pairs", "2"]) == 3
    assert capsys.readouterr().err.startswith("fgnas-check: ")


def test_phone_gone_mid_check_raises_device_fault(sims, adb_env, check_models):
    server = sims.start("pixel1")
    phone = create_device("pixel1", serial=server.address, benchmark_binary=adb_env)
    server.stop()
    with pytest.raises(DeviceFault):
        run_check(phone, check_models.demo, CheckOptions(budget_ms=1000.0, pairs=2, settings=FAST))
