"""Baseline files and device fingerprints of the CI gate."""
import json

import pytest

from profiler.errors import FgnasError
from profiler.gate.check_baseline import (
    Baseline,
    fingerprint,
    fingerprint_mismatches,
    load_baseline,
    require_same_device,
    save_baseline,
)
from profiler.measure.reference_model import REFERENCE_SPEC

CPU = {"vendor": "AuthenticAMD", "family": 26, "model": 2, "stepping": 1, "isa": ["avx2", "avx512_bf16"],
       "cache_kib": {"l2": 1024}}
HOST = {"name": "host", "hostname": "runner-1", "cpu_model": "AMD EPYC", "machine": "x86_64", "python": "3.11.7",
        "runtime": "ai-edge-litert", "runtime_version": "2.3.0", "threads": 1, "affinity": [0], "cpu": CPU}
PHONE = {"name": "pixel1", "serial": "FA123", "model": "Pixel", "manufacturer": "Google", "soc": "Snapdragon 821",
         "platform": "msm8996", "abi": "arm64-v8a", "sdk": "29", "emulator": False,
         "benchmark_tool": {"file": "benchmark_model", "sha256": "ab" * 32, "output_format": "current"},
         "thermal_at_connect_c": {"cpu": 35.0}}
SETTINGS = {"threads": 1, "runs": 30, "warmup": 5, "use_xnnpack": True, "timeout_s": 120.0}


def _baseline(device=HOST, settings=SETTINGS) -> Baseline:
    return Baseline(model_sha256="12" * 32, model_name="demo.tflite", reference_spec=REFERENCE_SPEC,
                    reference_sha256="34" * 32, device=device, settings=settings, model_ms=(0.15, 0.16, 0.15),
                    reference_ms=(0.6, 0.61, 0.6), ratio={"estimate": 0.25}, created_at=1.0)


def test_host_fingerprint_keeps_cpu_and_runtime_and_drops_hostname_and_pinned_core():
    fp = fingerprint(HOST, SETTINGS)
    assert fp == {"name": "host", "cpu_model": "AMD EPYC", "cpu.vendor": "AuthenticAMD", "cpu.family": 26,
                  "cpu.model": 2, "cpu.stepping": 1, "cpu.isa": ["avx2", "avx512_bf16"], "machine": "x86_64",
                  "runtime": "ai-edge-litert", "runtime_version": "2.3.0", "settings.threads": 1,
                  "settings.use_xnnpack": True}
    assert fingerprint({**HOST, "hostname": "runner-2", "affinity": [1], "python": "3.12"}, SETTINGS) == fp


def test_phone_fingerprint_keeps_model_soc_and_tool_and_drops_serial_and_temperature():
    fp = fingerprint(PHONE, SETTINGS)
    assert fp["model"] == "Pixel" and fp["soc"] == "Snapdragon 821" and fp["benchmark_tool.sha256"] == "ab" * 32
    assert fp["emulator"] is False
    other_unit = {**PHONE, "serial": "FA999", "thermal_at_connect_c": {"cpu": 41.0}}
    assert fingerprint(other_unit, SETTINGS) == fp


def test_mismatches_name_each_differing_field():
    a = fingerprint(HOST, SETTINGS)
    b = fingerprint({**HOST, "cpu_model": "Intel Xeon"}, {**SETTINGS, "threads": 4})
    assert fingerprint_mismatches(a, b) == {"cpu_model": ("AMD EPYC", "Intel Xeon"), "settings.threads": (1, 4)}
    assert fingerprint_mismatches(a, a) == {}


def test_another_micro_architecture_under_the_same_model_name_is_another_device():
    zen4 = {**HOST, "cpu": {**CPU, "family": 25, "model": 17, "isa": ["avx2"]}}
    assert fingerprint_mismatches(fingerprint(HOST, SETTINGS), fingerprint(zen4, SETTINGS)) == {
        "cpu.family": (26, 25), "cpu.isa": (["avx2", "avx512_bf16"], ["avx2"]), "cpu.model": (2, 17)}


def test_baseline_from_another_device_is_refused_with_the_fields(tmp_path):
    with pytest.raises(FgnasError, match="cpu_model: baseline 'AMD EPYC', here 'Intel Xeon'.*--update-baseline"):
        require_same_device(_baseline(), tmp_path / "b.json", fingerprint({**HOST, "cpu_model": "Intel Xeon"},
                                                                          SETTINGS))
    with pytest.raises(FgnasError, match="name: baseline 'host', here 'pixel1'"):
        require_same_device(_baseline(), tmp_path / "b.json", fingerprint(PHONE, SETTINGS))
    require_same_device(_baseline(), tmp_path / "b.json", fingerprint({**HOST, "hostname": "ci-7"}, SETTINGS))


def test_baseline_round_trips_through_its_file(tmp_path):
    path = tmp_path / "sub" / "baseline.json"
    save_baseline(_baseline(), path)
    assert load_baseline(path) == _baseline()
    doc = json.loads(path.read_text())
    assert doc["format"] == "fgnas-check-baseline" and doc["fingerprint"]["cpu_model"] == "AMD EPYC"
    assert doc["pairs"][0] == {"model_ms": 0.15, "reference_ms": 0.6}
    assert [p.name for p in path.parent.iterdir()] == ["baseline.json"]  # no temp file left behind


@pytest.mark.parametrize("content, message", [
    (None, "does not exist: record one with --update-baseline"),
    ("{not json", "cannot read baseline"),
    ('{"format": "fgnas-latency-table"}', "is not an fgnas-check baseline"),
    ('{"format": "fgnas-check-baseline", "format_version": 9}', "format_version 9"),
    ('{"format": "fgnas-check-baseline", "format_version": 1, "pairs": []}', "is malformed"),
])
def test_unreadable_baselines_are_user_errors(tmp_path, content, message):
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(FgnasError, match=message) as err:
        load_baseline(path)
    assert err.value.exit_code == 2


def test_baseline_with_one_pair_or_zero_latency_is_refused(tmp_path):
    path = tmp_path / "b.json"
    doc = _baseline().to_dict()
    doc["pairs"] = doc["pairs"][:1]
    path.write_text(json.dumps(doc))
    with pytest.raises(FgnasError, match="at least 2 pairs"):
        load_baseline(path)
