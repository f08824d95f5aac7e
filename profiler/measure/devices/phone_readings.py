"""Pure readers of what a phone's shell prints: getprop, `grep -H . FILES` of sysfs, thermal zones, CPU frequencies."""
from __future__ import annotations

import re
from dataclasses import dataclass

_GETPROP_LINE = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")
_CPU_FILE = re.compile(r"^/sys/devices/system/cpu/cpu(\d+)/cpufreq/(\w+)$")
_ZONE_FILE = re.compile(r"^/sys/class/thermal/(thermal_zone\d+)/(temp|type)$")

# sysfs paths read for the fingerprint and the thermal guard (globs expanded by the phone's shell)
CPU_GLOBS = ("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq",
             "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")
THERMAL_GLOBS = ("/sys/class/thermal/thermal_zone*/type", "/sys/class/thermal/thermal_zone*/temp")


@dataclass(frozen=True)
class ThermalReading:
    zone: str
    type: str
    temp_c: float


def parse_getprop(text: str) -> dict[str, str]:
    """`getprop` with no argument prints `[name]: [value]` per line."""
    return {m.group(1): m.group(2) for line in text.splitlines() if (m := _GETPROP_LINE.match(line.strip()))}


def parse_grep_files(text: str) -> dict[str, str]:
    """`grep -H . FILE...` prints `path:first-line` for each readable file; errors ("grep: ...") are skipped."""
    files: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("/") and ":" in line:
            path, value = line.split(":", 1)
            files.setdefault(path, value.strip())
    return files


def cpu_values(files: dict[str, str], name: str) -> dict[int, str]:
    """Per-CPU value of one cpufreq file (e.g. cpuinfo_max_freq, scaling_governor)."""
    out = {}
    for path, value in files.items():
        m = _CPU_FILE.match(path)
        if m and m.group(2) == name:
            out[int(m.group(1))] = value
    return dict(sorted(out.items()))


def max_freqs_khz(files: dict[str, str]) -> dict[int, int]:
    return {cpu: int(v) for cpu, v in cpu_values(files, "cpuinfo_max_freq").items() if v.isdigit()}


def sysfs_temp_c(raw: str) -> float | None:
    """Thermal zones report millidegrees on most kernels and whole degrees on some; implausible values are dropped."""
    try:
        value = float(raw)
    except ValueError:
        return None
    celsius = value / 1000.0 if abs(value) >= 1000 else value
    return celsius if -40.0 <= celsius <= 150.0 else None


def thermal_readings(files: dict[str, str]) -> list[ThermalReading]:
    zones: dict[str, dict[str, str]] = {}
    for path, value in files.items():
        if m := _ZONE_FILE.match(path):
            zones.setdefault(m.group(1), {})[m.group(2)] = value
    readings = []
    for zone, d in sorted(zones.items(), key=lambda kv: int(kv[0].removeprefix("thermal_zone"))):
        temp = sysfs_temp_c(d.get("temp", ""))
        if temp is not None:
            readings.append(ThermalReading(zone, d.get("type", ""), temp))
    return readings
