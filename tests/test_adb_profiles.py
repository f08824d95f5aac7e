"""Phone profiles and the pure readers of getprop/sysfs text, against hand-written values; the simulator's CLI."""
import subprocess
import sys

import pytest

from profiler.errors import FgnasError
from profiler.measure.benchmark_output import parse_benchmark_output
from profiler.measure.devices import create_device
from profiler.measure.devices.adb import measurement_from_output, split_status, temps_by_name
from profiler.measure.devices.device_profile import big_core_mask, load_profile, profile_names
from profiler.measure.devices.phone_readings import (
    ThermalReading,
    cpu_values,
    max_freqs_khz,
    parse_getprop,
    parse_grep_files,
    sysfs_temp_c,
    thermal_readings,
)


def test_every_issue_profile_exists():
    assert {"pixel1", "galaxy-s8", "emulator", "android"} <= set(profile_names())


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(FgnasError, match="choose one of android, emulator"):
        load_profile("pixel9")


@pytest.mark.parametrize("freqs, mask", [
    ({0: 1593600, 1: 1593600, 2: 2150400, 3: 2150400}, 0b1100),  # Pixel 1: 2 big cores
    ({i: 1690000 for i in range(4)} | {i: 2314000 for i in range(4, 8)}, 0xF0),  # Galaxy S8 Exynos
    ({0: 1800000, 1: 1800000, 2: 1800000, 3: 1800000}, 0xF),  # one cluster: every core
    ({}, None),  # nothing readable: caller uses the profile's fallback
])
def test_big_core_mask(freqs, mask):
    assert big_core_mask(freqs) == mask


def test_pixel1_profile_accepts_pixel_and_pixel_xl_only():
    profile = load_profile("pixel1")
    assert profile.mismatch({"ro.product.model": "Pixel", "ro.board.platform": "msm8996"}) is None
    assert profile.mismatch({"ro.product.model": "Pixel XL"}) is None
    assert "Pixel 2" in profile.mismatch({"ro.product.model": "Pixel 2"})


def test_galaxy_s8_soc_from_model_number():
    profile = load_profile("galaxy-s8")
    assert profile.soc_for({"ro.product.model": "SM-G950F"}).name == "Exynos 8895"
    assert profile.soc_for({"ro.product.model": "SM-G955FD"}).name == "Exynos 8895"
    assert profile.soc_for({"ro.product.model": "SM-G950N"}).name == "Exynos 8895"
    assert profile.soc_for({"ro.product.model": "SM-G950U1"}).name.startswith("Snapdragon 835")
    assert profile.soc_for({"ro.product.model": "SCV36"}).name.startswith("Snapdragon 835")
    assert profile.soc_for({"ro.product.model": "SM-G960F"}) is None  # Galaxy S9


def test_emulator_profile_requires_qemu_property():
    profile = load_profile("emulator")
    assert profile.mismatch({"ro.product.model": "sdk_gphone64_arm64", "ro.kernel.qemu": "1"}) is None
    assert "ro.kernel.qemu" in profile.mismatch({"ro.product.model": "Pixel"})


def test_android_profile_takes_any_phone():
    assert load_profile("android").mismatch({"ro.product.model": "Nokia 3.4"}) is None


def test_android_profile_names_the_soc_by_platform(sims, adb_env):
    server = sims.start("galaxy-s8-snapdragon")
    with create_device("android", serial=server.address, benchmark_binary=adb_env) as phone:
        info = phone.info()
    assert info["soc"] == "msm8998" and info["big_core_mask"] == "f0" and info["name"] == "android"


def test_parse_getprop():
    text = "[ro.product.model]: [Pixel]\n[ro.build.version.release]: [10]\n[empty]: []\nnoise\n"
    assert parse_getprop(text) == {"ro.product.model": "Pixel", "ro.build.version.release": "10", "empty": ""}


def test_parse_grep_files_skips_unreadable_files():
    text = ("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq:1593600\n"
            "grep: /sys/devices/system/cpu/cpu4/cpufreq/cpuinfo_max_freq: Permission denied\n"
            "/sys/devices/system/cpu/cpu2/cpufreq/cpuinfo_max_freq:2150400\n"
            "/sys/devices/system/cpu/cpu2/cpufreq/scaling_governor:schedutil\n")
    files = parse_grep_files(text)
    assert max_freqs_khz(files) == {0: 1593600, 2: 2150400}
    assert cpu_values(files, "scaling_governor") == {2: "schedutil"}


@pytest.mark.parametrize("raw, celsius", [("35000", 35.0), ("41", 41.0), ("-5000", -5.0), ("523000", None),
                                          ("n/a", None)])
def test_sysfs_temp_units(raw, celsius):
    assert sysfs_temp_c(raw) == celsius


def test_thermal_readings_pair_type_and_temp_in_zone_order():
    files = {"/sys/class/thermal/thermal_zone10/temp": "30000", "/sys/class/thermal/thermal_zone10/type": "battery",
             "/sys/class/thermal/thermal_zone2/temp": "45500", "/sys/class/thermal/thermal_zone2/type": "cpu0"}
    assert thermal_readings(files) == [ThermalReading("thermal_zone2", "cpu0", 45.5),
                                       ThermalReading("thermal_zone10", "battery", 30.0)]


def test_split_status_reads_our_exit_status_marker():
    assert split_status("out\n__fgnas_rc=126\n") == ("out\n", 126)
    assert split_status("cut off mid-") == ("cut off mid-", None)


def test_simulator_runs_standalone_and_prints_its_address():
    proc = subprocess.Popen([sys.executable, "-m", "profiler.adb_sim", "--profile", "galaxy-s8", "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        address = proc.stdout.readline().strip()
        host, port = address.split(":")
        assert host == "127.0.0.1" and int(port) > 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_measurement_from_tool_output_in_milliseconds():
    text = ("INFO: count=3 first=2100 curr=1900 min=1900 max=2100 avg=2000 std=81\n"
            "INFO: count=4 first=1500 curr=1400 min=1400 max=1700 avg=1525 std=109\n"
            "INFO: Inference timings in us: Init: 900, First inference: 2100, Warmup (avg): 2000, "
            "Inference (avg): 1525\n")
    m = measurement_from_output(parse_benchmark_output(text), 10.0, 11.0, {"serial": "S"})
    assert (m.median_ms, m.mean_ms, m.std_ms, m.min_ms, m.count, m.warmup) == (1.525, 1.525, 0.109, 1.4, 4, 3)
    assert m.extra["max_ms"] == 1.7 and m.extra["init_ms"] == 0.9 and m.extra["serial"] == "S"
    assert m.extra["below_resolution"] is False


def test_runs_under_the_tools_microsecond_resolution_are_half_a_microsecond_and_flagged():
    text = ("INFO: count=1 curr=1\nINFO: count=30 curr=0(all same)\n"
            "INFO: Inference timings in us: Init: 300, First inference: 1, Warmup (avg): 1, Inference (avg): 0\n")
    m = measurement_from_output(parse_benchmark_output(text), 0.0, 1.0, {})
    assert m.median_ms == m.mean_ms == 0.0005 and m.min_ms == 0.0 and m.extra["below_resolution"] is True


def test_temperatures_keyed_by_type_unless_a_type_repeats():
    readings = [ThermalReading("thermal_zone0", "cpu", 40.0), ThermalReading("thermal_zone1", "cpu", 42.0),
                ThermalReading("thermal_zone2", "battery", 30.0)]
    assert temps_by_name(readings) == {"thermal_zone0:cpu": 40.0, "thermal_zone1:cpu": 42.0, "battery": 30.0}
