"""Issue 16: a host latency table is checked against this machine before it prices anything this machine runs.

Tables here are fabricated from synthetic measurements and this machine's own fingerprint (changed where a test wants
another machine): nothing assumes that the shipped device_tables/host-*.json is this machine's. Every probe timing and
measurement runs pinned to core 1 (the table's recorded affinity, or `cpu=1`): core 0 is the latency tables' own.
"""
import copy
import json
import os
from pathlib import Path

import pytest

import synthetic_table as syn
from profiler.latency import device_check
from profiler.latency.device_check import (
    HOST_FIELDS,
    LEGACY_HOST_FIELDS,
    OtherDeviceError,
    assess,
    check_table_device,
    compare_fingerprints,
    recorded_probe,
)
from profiler.latency.table import LatencyTable
from profiler.measure.devices import create_device
from profiler.measure.devices.host import HostDevice, parse_cache_sizes, parse_cpuinfo
from profiler.measure.reference_model import REFERENCE_SPEC
from profiler.ops import OpProbe
from profiler.spec import ConvSpec

PROBE_MS = 0.25
CPU = 1  # never core 0

# /proc/cpuinfo of this project's machine (first processor), captured 2026-12-03
AMD_ZEN5_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
stepping\t: 1
microcode\t: 0x1000065
cpu MHz\t\t: 2596.120
cache size\t: 1024 KB
physical id\t: 0
siblings\t: 2
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht \
syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid extd_apicid \
tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx \
f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext vmmcall \
fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq adx smap avx512ifma clflushopt clwb avx512cd \
sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx_vnni avx512_bf16 clzero xsaveerptr arat avx512vbmi umip \
avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid fsrm avx512_vp2intersect
bugs\t\t: sysret_ss_attrs null_seg spectre_v1 spectre_v2 spec_store_bypass srso spectre_v2_user

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 26
"""
# an aarch64 host's /proc/cpuinfo (Neoverse N1) has no vendor_id/flags, but implementer, part and Features
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1
"""


def test_cpuinfo_gives_vendor_family_model_stepping_and_the_isa_flags_xnnpack_dispatches_on():
    cpu = parse_cpuinfo(AMD_ZEN5_CPUINFO)
    assert (cpu["vendor"], cpu["family"], cpu["model"], cpu["stepping"]) == ("AuthenticAMD", 26, 2, 1)
    assert cpu["model_name"] == "AMD EPYC"
    assert {"avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni"} <= set(cpu["isa"])
    assert not {"fpu", "ht", "hypervisor", "aes", "bmi2"} & set(cpu["isa"])
    assert cpu["isa"] == sorted(cpu["isa"])
    arm = parse_cpuinfo(ARM_CPUINFO)
    assert (arm["vendor"], arm["family"], arm["model"], arm["stepping"]) == ("0x41", 8, 0xd0c, 1)
    assert "asimddp" in arm["isa"] and "fphp" in arm["isa"]


def test_sysfs_cache_sizes_in_kib():
    entries = [("1\n", "Data\n", "48K\n"), ("1", "Instruction", "32K"), ("2", "Unified", "1024K"),
               ("3", "Unified", "32768K"), ("4", "Unified", "")]
    assert parse_cache_sizes(entries) == {"l1d": 48, "l1i": 32, "l2": 1024, "l3": 32768}


@pytest.fixture(scope="module")
def here() -> dict:
    """This machine's fingerprint as HostDevice records it, pinned (as a table records it) to core 1."""
    with HostDevice(cpu=CPU) as host:
        return host.info()


def other_machine(info: dict) -> dict:
    other = copy.deepcopy(info)
    if isinstance(other.get("cpu"), dict) and "family" in other["cpu"]:
        other["cpu"]["family"] = other["cpu"]["family"] + 1
        other["cpu"]["isa"] = [f for f in other["cpu"].get("isa", []) if not f.startswith("avx512")]
    other["cpu_model"] = "Another CPU 9000"
    return other


def digits_records() -> list[dict]:
    """Synthetic measurements of every condition and op the digits backbone (any search space) needs."""
    recs = [r for hw in (32, 16, 8) for k in (1, 3, 5, 7) for stride in (1, 2)
            for spec in (ConvSpec(hw, hw, 16, 16, k, stride, 1, "relu"),
                         ConvSpec.depthwise(hw, hw, 16, k, stride, "relu"))
            for r in syn.conv_records_like(spec)]
    probes = [OpProbe.for_feature_map(op, 8, 8, c) for op in ("ADD", "MEAN", "FULLY_CONNECTED") for c in (8, 32, 128)]
    return recs + [syn.probe_record(probe, syn.op_true_ms(probe.units[1])) for probe in probes]


def fabricated_table(tmp_path: Path, info: dict, probe_ms: float | None = PROBE_MS, name: str = "t") -> Path:
    """A host table of synthetic measurements that records `info` and a reference probe of `probe_ms`."""
    recs = syn.records() + digits_records()
    if probe_ms is not None:
        ref = syn.conv_record(REFERENCE_SPEC, probe_ms)
        recs += [{**ref, "kind": "reference"}, {**ref, "kind": "reference", "m": {**ref["m"], "median_ms": 9.0}}]
    raw = syn.write_raw_log(tmp_path / f"{name}.raw.jsonl", recs)
    settings = {**syn.SETTINGS, "space": "cifar", "spaces": ["cifar", "imagenet"]}
    return LatencyTable.build(recs, info, settings, raw).save(tmp_path / f"{name}.json")


def timer_of(ms: float):
    # the table's core when this process may run there, else the first it may (a run under `taskset -c 0`)
    allowed = sorted(os.sched_getaffinity(0))
    core = CPU if CPU in allowed else allowed[0]

    def timer(device, spec, settings):
        assert spec == REFERENCE_SPEC and device.cpu == core
        return ms
    return timer


def test_the_table_records_its_reference_probe_lowest_median(tmp_path, here):
    doc = LatencyTable.load(fabricated_table(tmp_path, here)).doc
    assert doc["reference_probe"]["lowest_median_ms"] == PROBE_MS and doc["reference_probe"]["n"] == 2
    assert recorded_probe(doc) == (REFERENCE_SPEC, PROBE_MS)
    assert doc["device"]["cpu"]["family"] == here["cpu"]["family"]


def test_a_table_of_the_old_schema_is_compared_on_what_it_records_and_its_drift_probe(here):
    old = {"name": "host", "cpu_model": here["cpu_model"], "logical_cpus": here["logical_cpus"], "runtime":
           here["runtime"], "runtime_version": here["runtime_version"], "threads": 1, "affinity": [0]}
    doc = {"device": old, "settings": {"space": "cifar"},
           "drift": {"reference_id": REFERENCE_SPEC.config_hash(), "devices": {"host": {"min_ms": 0.54}}}}
    check = assess("old.json", doc, here, 0.55, allowed=False)
    assert check.same_device and check.compared == (*LEGACY_HOST_FIELDS, "reference_probe")
    assert set(check.not_recorded) == {"cpu.vendor", "cpu.family", "cpu.model", "cpu.stepping", "cpu.isa"}
    assert not assess("old.json", doc, here, 0.27, allowed=False).same_device  # 2x faster: refused
    assert not assess("old.json", {**doc, "device": {**old, "logical_cpus": 64}}, here, None, False).same_device


def test_fingerprints_differ_on_family_and_isa_flags_and_say_which(here):
    compared, _, differences = compare_fingerprints(other_machine(here), here)
    assert compared == HOST_FIELDS
    assert {"cpu.family", "cpu_model"} <= set(differences)
    if any(f.startswith("avx512") for f in here["cpu"]["isa"]):
        assert differences["cpu.isa"][0] == "no more flags" and "+avx512f" in differences["cpu.isa"][1]
    assert compare_fingerprints(here, {**here, "affinity": [0], "hostname": "other", "logical_cpus": 64})[2] == {}


def test_another_machines_table_is_refused_by_predict_with_both_machines_and_the_profile_command(tmp_path, here,
                                                                                                    capsys):
    from profiler.latency.cli_table import main

    table = fabricated_table(tmp_path, other_machine(here))
    assert main(["predict", str(table), "--conv", "16x16x50:33:k3:s1:relu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fgnas-table: latency table")
    assert "Another CPU 9000" in err[0] and f"family {here['cpu']['family']} " in err[0]
    assert f"fgnas-profile --device host --space cifar --out {tmp_path}/host-" in err[0]
    assert "--space imagenet" in err[0] and "--allow-other-device" in err[0]


def test_a_slow_probe_is_timed_again_and_the_lowest_kept():
    times, slept = iter([0.40, 0.33, 0.22, 0.9]), []
    assert device_check.lowest_probe(lambda: next(times), 0.20, bound=0.25, retries=3, gap_s=2.0,
                                     sleep=slept.append) == 0.22
    assert slept == [2.0, 2.0]  # stopped once within the bound
    fast = iter([0.10, 0.05])
    assert device_check.lowest_probe(lambda: next(fast), 0.20, sleep=slept.append) == 0.10  # faster: not retried
    slow = iter([0.5, 0.6, 0.45, 0.55, 0.1])
    assert device_check.lowest_probe(lambda: next(slow), 0.20, retries=3, sleep=lambda s: None) == 0.45


def test_a_2x_reference_probe_difference_is_refused(tmp_path, here, monkeypatch, capsys):
    from profiler.latency.cli_table import main

    monkeypatch.setattr(device_check, "PROBE_RETRY_GAP_S", 0.0)

    monkeypatch.setattr(device_check, "time_reference_probe", timer_of(PROBE_MS / 2))
    table = fabricated_table(tmp_path, here)
    assert main(["predict", str(table), "--conv", "16x16x50:33:k3:s1:relu"]) == 2
    err = capsys.readouterr().err
    assert "0.50x, beyond the +-25% bound" in err and "fgnas-profile --device host --space cifar" in err
    assert "a machine of this kind" in err and "not at this speed" in err and "another machine" not in err.split(";")[0]
    with pytest.raises(OtherDeviceError, match="2.00x"):
        check_table_device(LatencyTable.load(table), timer=timer_of(2 * PROBE_MS))


def test_allow_other_device_proceeds_and_predict_json_carries_the_warning(tmp_path, here, capsys):
    from profiler.latency.cli_table import main

    table = fabricated_table(tmp_path, other_machine(here))
    assert main(["predict", str(table), "--conv", "16x16x50:33:k3:s1:relu", "--json", "--allow-other-device"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["ms"] > 0 and not result["device_check"]["same_device"]
    assert "used anyway (--allow-other-device)" in result["device_check"]["warning"]
    assert "warning: latency table" in captured.err


def test_the_same_machine_passes_with_its_reference_probe_timed_for_real(tmp_path, here, capsys):
    """The real probe: LiteRT pinned to the table's core (1), lowest of five medians; well under a second."""
    import time

    with HostDevice(cpu=CPU) as host:
        measured = device_check.time_reference_probe(host, REFERENCE_SPEC, device_check._table_settings(
            {"settings": syn.SETTINGS}))
    table = fabricated_table(tmp_path, here, probe_ms=measured)
    started = time.monotonic()
    check = check_table_device(LatencyTable.load(table))
    assert time.monotonic() - started < 5  # a worker start and 5 x 12 runs of a 0.2-0.6 ms conv
    assert check.same_device and check.warning is None and "reference_probe" in check.compared
    assert abs(check.probe.ratio - 1) <= 0.25
    from profiler.latency.cli_table import main

    assert main(["predict", str(table), "--conv", "16x16x50:33:k3:s1:relu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["device_check"]["same_device"] is True


def test_a_phone_table_is_not_checked_without_a_phone_and_fingerprint_only_with_one(tmp_path, here):
    phone = {"name": "pixel1", "model": "Pixel", "soc": "msm8996", "sdk": "28"}
    recs = syn.records()
    raw = syn.write_raw_log(tmp_path / "p.raw.jsonl", recs)
    table = LatencyTable.load(LatencyTable.build(recs, phone, syn.SETTINGS, raw).save(tmp_path / "p.json"))
    assert check_table_device(table) is None

    class Phone:
        name = "pixel1"

        def __init__(self, info):
            self._info = info

        def info(self):
            return self._info

    def no_timer(*_):
        raise AssertionError("a phone is compared by fingerprint only")

    assert check_table_device(table, Phone({**phone, "serial": "x", "kernel": "3.18"}), timer=no_timer).same_device
    with pytest.raises(OtherDeviceError, match="soc 'msm8996' there, 'sdm845' here"):
        check_table_device(table, Phone({**phone, "soc": "sdm845"}), timer=no_timer)
    with pytest.raises(OtherDeviceError, match="name 'pixel1' there, 'host' here"):
        check_table_device(table, HostDevice(cpu=CPU), timer=no_timer)


def test_fgnas_check_with_another_machines_table_exits_2_and_allowed_records_the_warning(tmp_path, here, check_models,
                                                                                         monkeypatch, capsys):
    from profiler.gate import cli_check

    monkeypatch.setattr(cli_check, "create_device", lambda name, **kw: create_device(name, cpu=CPU, **kw))
    table = fabricated_table(tmp_path, other_machine(here))
    argv = [str(check_models.demo), "--device", "host", "--budget", "1s", "--table", str(table), "--pairs", "2",
            "--runs", "3", "--warmup", "1", "--cache-dir", str(check_models.cache), "--json", str(tmp_path / "c.json")]
    assert cli_check.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fgnas-profile --device host" in err[0]
    assert json.loads((tmp_path / "c.json").read_text())["exit_code"] == 2
    assert cli_check.main([*argv, "--allow-other-device"]) == 0
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["status"] == "pass" and "used anyway" in report["device_check"]["warning"]
    assert any(n.startswith("warning: latency table") for n in report["notes"])


@pytest.fixture()
def run_dir(tmp_path):
    from export.sampling import random_searched
    from search.rundir import RunDir

    net = random_searched("digits", 0, max_ops=2, search_space="kernels")
    rd = RunDir(tmp_path / "run")
    rd.path.mkdir(parents=True)
    rd.write_arch(net.to_arch({"search": {"data": "digits"}}))
    rd.save_weights(net.state_dict())
    return rd.path


def test_fgnas_export_refuses_another_machines_table_before_any_work(tmp_path, here, run_dir, capsys):
    from export.cli import main

    table = fabricated_table(tmp_path, other_machine(here))
    assert main([str(run_dir), "--device", "host", "--table", str(table)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was profiled on another machine" in err[0] and "fgnas-profile --device host" in err[0]
    assert not (run_dir / "export").exists()


@pytest.mark.slow
def test_fgnas_export_allowed_records_the_warning_in_export_report(tmp_path, here, run_dir):
    from export.pipeline import ExportOptions, export_run
    from export.run import load_run

    table = fabricated_table(tmp_path, other_machine(here))
    options = ExportOptions(tmp_path / "export", "host", table, parity_samples=8, eval_samples=32,
                            timing={"runs": 3, "warmup": 1}, device_options={"cpu": CPU}, allow_other_device=True)
    result = export_run(load_run(run_dir), options)
    report = json.loads(result.report_path.read_text())
    assert "used anyway (--allow-other-device)" in report["device_check"]["warning"]
    assert report["latency"]["model_measured_ms"] > 0


@pytest.mark.slow  # two searches: ~10 s
def test_fgnas_search_refuses_another_machines_table_and_allowed_records_it_in_arch_json(tmp_path, here, capsys):
    from search.cli import main

    table = fabricated_table(tmp_path, other_machine(here))
    argv = ["--target", "80%latency", "--latency-table", str(table), "--epochs-pretrain", "0", "--epochs-search", "1",
            "--epochs-finetune", "0", "--batch-size", "64", "--train-subset", "128", "--val-subset", "64", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fgnas-profile --device host" in err[0]
    assert not (tmp_path / "refused").exists()
    assert main([*argv, "--out", str(tmp_path / "r"), "--allow-other-device"]) == 0
    arch = json.loads((tmp_path / "r" / "arch.json").read_text())
    assert "used anyway (--allow-other-device)" in arch["latency_table"]["device_check"]["warning"]


@pytest.mark.parametrize("recorded,allowed,expected", [([0], {0, 1}, 0), ([0], {1}, 1), ([1], {0, 1}, 1),
                                                         (None, {1}, 1), ([7], {0, 1}, 0)])
def test_the_reference_probe_runs_on_the_tables_core_only_where_this_process_may_run(monkeypatch, recorded, allowed,
                                                                                      expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: allowed)
    device = device_check._host_for({"device": {"affinity": recorded}})
    assert device.cpu == expected


def test_a_table_is_named_after_the_device_identity_that_tells_machines_apart():
    from profiler.measure.devices.base import identity_name

    zen5 = {"name": "host", "cpu_model": "AMD EPYC",
            "cpu": {"vendor": "AuthenticAMD", "family": 26, "model": 2, "stepping": 1}}
    zen3 = {**zen5, "cpu": {**zen5["cpu"], "family": 25, "model": 1}}
    assert identity_name(zen5) == "host-amd-f26m2s1"
    assert identity_name(zen3) == "host-amd-f25m1s1"  # the same model name, another micro-architecture
    assert identity_name({"name": "host", "cpu_model": "Intel(R) Xeon(R) @ 2.2GHz"}) == "host-intel-r-xeon-r-2.2ghz"
    assert identity_name({"name": "pixel1", "model": "Pixel"}) == "pixel1-pixel"
