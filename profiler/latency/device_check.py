"""Is this latency table this machine's? The check every command runs before a table prices what this machine runs.

A table is a measurement of one machine: another CPU generation behind the same "AMD EPYC" name ran the same convs
2x faster than its table says (issue 16). So before `fgnas-table predict`, a search, export's predicted-vs-measured
or `fgnas-check --table` trust a table, `check_table_device` compares the table's recorded device with this one:

1. the fingerprint fields that decide speed (HOST_FIELDS: CPU vendor, family, model, stepping, the ISA flags the
   runtime's kernels dispatch on, runtime and version, threads; a table recorded before those fields existed is
   compared on what it has, LEGACY_HOST_FIELDS; a phone on PHONE_FIELDS);
2. on a host whose fingerprint matches, the table's reference probe (the conv the sweep timed every few probes,
   profiler.latency.table.reference_probe) timed again here, the lowest of PROBE_PASSES medians pinned to one core as
   the sweep measures, well under a second: off by more than PROBE_BOUND, the machine is not the one profiled (or it is
   configured differently: a VM on another host, another governor).

Either one failing raises OtherDeviceError (one line naming both machines and the fgnas-profile command for this one,
exit 2) unless the user allowed another device; then the DeviceCheck carries the warning, which every output records.
Everything here but `time_reference_probe` and `check_table_device` is a pure function of dicts.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from profiler.errors import FgnasError
from profiler.measure.devices.base import BenchmarkSettings, Device, identity_name
from profiler.spec import ConvSpec

PROBE_BOUND = 0.25  # |here / table - 1| of the reference probe beyond which a table is another machine's
PROBE_PASSES = 5  # the lowest of this many medians (each `runs` invocations, ~20 ms for the 0.3-0.6 ms probe)
# A probe slower than the bound is timed again this many times, this far apart, and the lowest kept: on a 2-core VM a
# training on the other core slowed it by 1.26-1.35x for a moment (the table was this machine's)
PROBE_RETRIES = 3
PROBE_RETRY_GAP_S = 2.0
HOST = "host"  # profiler.measure.devices.host.HostDevice.name
# Fields (dotted paths into Device.info()) that decide how fast a model runs
# What tells two x86/ARM micro-architectures apart (a model name such as "AMD EPYC" spans several); check baselines
# compare these too (profiler.gate.check_baseline)
CPU_FIELDS = ("cpu.vendor", "cpu.family", "cpu.model", "cpu.stepping", "cpu.isa")
HOST_FIELDS = ("name", "cpu_model", *CPU_FIELDS, "runtime", "runtime_version", "threads")
# A host table written before tables recorded `cpu` (schema 4 tables up to issue 16) has only these
LEGACY_HOST_FIELDS = ("name", "cpu_model", "logical_cpus", "runtime", "runtime_version", "threads")
PHONE_FIELDS = ("name", "manufacturer", "model", "soc", "platform", "hardware", "abi", "android_release", "sdk",
                "benchmark_tool.sha256")
class OtherDeviceError(FgnasError):
    """The table was profiled on another machine (or one that now runs at another speed). Exit code 2."""


@dataclass(frozen=True)
class ProbeTiming:
    spec: ConvSpec
    table_ms: float  # the table's lowest median of it
    here_ms: float | None  # None: not timed (a phone, or the fingerprints already differ)

    @property
    def ratio(self) -> float | None:
        return None if self.here_ms is None else self.here_ms / self.table_ms

    def within(self, bound: float) -> bool:
        return self.ratio is None or abs(self.ratio - 1) <= bound


@dataclass(frozen=True)
class DeviceCheck:
    """What was compared between a table's device and this one, and the verdict."""

    table: str
    table_device: dict
    this_device: dict
    compared: tuple[str, ...]
    not_recorded: tuple[str, ...]  # fields this device reports that the table does not: not compared
    differences: dict[str, tuple] = field(default_factory=dict)  # field: (table's, this device's)
    probe: ProbeTiming | None = None  # None: the table records no reference probe
    bound: float = PROBE_BOUND
    allowed: bool = False  # --allow-other-device
    command: str = ""  # the fgnas-profile command that makes this device's own table

    @property
    def same_device(self) -> bool:
        return not self.differences and (self.probe is None or self.probe.within(self.bound))

    @property
    def warning(self) -> str | None:
        """The one line a refusal prints (None when the device is the table's)."""
        if self.same_device:
            return None
        then = (f"used anyway (--allow-other-device), so its predictions may be far off; profile this one with "
                f"`{self.command}`" if self.allowed else
                f"profile this one with `{self.command}`, or pass --allow-other-device to use it anyway")
        if self.differences:
            why = ", ".join(f"{k} {_text(a)} there, {_text(b)} here" for k, (a, b) in self.differences.items())
            return (f"latency table {self.table} was profiled on another machine, {describe(self.table_device)}, "
                    f"not on this one, {describe(self.this_device)}: {why}; {then}")
        # the same kind of machine at another speed: another unit, or this one with its other cores busy
        p = self.probe
        return (f"latency table {self.table} was profiled on a machine of this kind, {describe(self.this_device)}, "
                f"but not at this speed: its reference probe {_conv_text(p.spec)} took {p.table_ms:.3f} ms there, "
                f"{p.here_ms:.3f} ms here ({p.ratio:.2f}x, beyond the +-{100 * self.bound:.0f}% bound; another "
                f"machine, or this one with its other cores busy); {then}")

    def to_dict(self) -> dict:
        """The record every output file keeps (arch.json's latency_table block, export_report.json, check JSON)."""
        probe = None if self.probe is None else {
            "spec": _conv_text(self.probe.spec), "table_ms": self.probe.table_ms, "here_ms": self.probe.here_ms,
            "ratio": self.probe.ratio, "bound": self.bound}
        return {"same_device": self.same_device, "allowed_other_device": self.allowed and not self.same_device,
                "warning": self.warning, "table_device": describe(self.table_device),
                "this_device": describe(self.this_device), "compared": list(self.compared),
                "not_recorded_in_table": list(self.not_recorded),
                "differences": {k: [a, b] for k, (a, b) in self.differences.items()}, "reference_probe": probe}


def _conv_text(spec: ConvSpec) -> str:
    from profiler.latency.tflite_reader import conv_text

    return conv_text(spec)


def _text(value) -> str:
    if isinstance(value, list):
        return "[" + " ".join(map(str, value)) + "]" if len(value) <= 4 else f"{len(value)} flags"
    return repr(value) if value is not None else "none"


def lookup(info: dict, dotted: str):
    value = info
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def speed_fields(table_info: dict) -> tuple[str, ...]:
    """The fields compared for a table's device: a host's (new or legacy) or a phone's."""
    if table_info.get("name") != HOST:
        return PHONE_FIELDS
    return HOST_FIELDS if isinstance(table_info.get("cpu"), dict) else LEGACY_HOST_FIELDS


def compare_fingerprints(table_info: dict, here: dict) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, tuple]]:
    """(compared, not recorded in the table, differences {field: (table's, here)}). A field is compared when the
    table records it; the name always (a phone's table on the host differs there). ISA flags compare as sets."""
    compared, missing, differences = [], [], {}
    fields = speed_fields(table_info)
    if table_info.get("name") == HOST and here.get("name") == HOST and fields is LEGACY_HOST_FIELDS:
        missing += [f for f in HOST_FIELDS if f not in fields and lookup(here, f) is not None]
    for name in fields:
        recorded, current = lookup(table_info, name), lookup(here, name)
        if recorded is None and name != "name":
            if current is not None:
                missing.append(name)
            continue
        compared.append(name)
        if isinstance(recorded, list) and isinstance(current, list):
            if set(recorded) != set(current):
                differences[name] = (sorted(set(recorded) - set(current)), sorted(set(current) - set(recorded)))
        elif recorded != current:
            differences[name] = (recorded, current)
    if "cpu.isa" in differences:  # say which flags only one side has
        only_table, only_here = differences["cpu.isa"]
        differences["cpu.isa"] = (f"+{' +'.join(only_table)}" if only_table else "no more flags",
                                  f"+{' +'.join(only_here)}" if only_here else "no more flags")
    return tuple(compared), tuple(dict.fromkeys(missing)), differences


def recorded_probe(doc: dict) -> tuple[ConvSpec, float] | None:
    """The table's reference probe and its lowest median: `reference_probe` (tables since issue 16), else the sweep's
    drift block (its lowest `min_ms` over devices) when its reference_id is the default reference conv."""
    probe = doc.get("reference_probe")
    if isinstance(probe, dict) and probe.get("lowest_median_ms"):
        return ConvSpec.from_dict(probe["spec"]), float(probe["lowest_median_ms"])
    from profiler.measure.reference_model import REFERENCE_SPEC

    drift = doc.get("drift") or {}
    lows = [d.get("min_ms") for d in (drift.get("devices") or {}).values() if isinstance(d, dict)]
    lows = [v for v in lows if isinstance(v, (int, float)) and v > 0]
    if drift.get("reference_id") == REFERENCE_SPEC.config_hash() and lows:
        return REFERENCE_SPEC, float(min(lows))
    return None


def describe(info: dict) -> str:
    """'host (AMD EPYC, AuthenticAMD family 26 model 2 stepping 1, ai-edge-litert 2.3.0, 1 thread)' or a phone's."""
    parts = [info.get("cpu_model") or info.get("model")]
    cpu = info.get("cpu") if isinstance(info.get("cpu"), dict) else {}
    if cpu.get("vendor") is not None:
        parts.append(f"{cpu['vendor']} family {cpu.get('family')} model {cpu.get('model')} "
                     f"stepping {cpu.get('stepping')}")
    for key in ("soc", "android_release"):
        if info.get(key):
            parts.append(f"{key} {info[key]}")
    if info.get("runtime"):
        parts.append(f"{info['runtime']} {info.get('runtime_version', '')}".strip())
    if info.get("threads"):
        parts.append(f"{info['threads']} thread{'s' if info['threads'] != 1 else ''}")
    shown = ", ".join(str(p) for p in parts if p)
    return f"{info.get('name', 'device')} ({shown})" if shown else str(info.get("name", "device"))


def profile_command(table_path: str, here: dict, settings: dict | None = None) -> str:
    """The fgnas-profile command that makes this device's own table, beside the given one (never over it: its raw log
    would be resumed with another machine's measurements)."""
    spaces = (settings or {}).get("spaces") or [(settings or {}).get("space") or "cifar"]
    folder = Path(table_path).parent
    out = folder / f"{identity_name(here)}.json"
    if out == Path(table_path):
        out = folder / f"{identity_name(here)}-new.json"
    then = "".join(f" && fgnas-profile --device {here.get('name', HOST)} --space {s} --out {out}" for s in spaces[1:])
    return f"fgnas-profile --device {here.get('name', HOST)} --space {spaces[0]} --out {out}{then}"


def assess(table_path: str, table_doc: dict, here: dict, probe_ms: float | None, allowed: bool,
           bound: float = PROBE_BOUND) -> DeviceCheck:
    """The verdict from what is recorded and what was measured (probe_ms None: not timed). Pure."""
    compared, missing, differences = compare_fingerprints(table_doc["device"], here)
    recorded = recorded_probe(table_doc)
    probe = None if recorded is None else ProbeTiming(recorded[0], recorded[1], probe_ms)
    if probe is not None:
        compared += ("reference_probe",) if probe_ms is not None else ()
    return DeviceCheck(table_path, table_doc["device"], here, compared, missing, differences, probe, bound, allowed,
                       profile_command(table_path, here, table_doc.get("settings")))


def time_reference_probe(device: Device, spec: ConvSpec, settings: BenchmarkSettings,
                         cache_dir: Path | None = None, passes: int = PROBE_PASSES) -> float:
    """The lowest of `passes` medians of the reference conv on `device` (the edge: builds it if not cached)."""
    from profiler.measure.interleaved import lowest_of_passes
    from profiler.measure.model_builder import DEFAULT_CACHE_DIR, build_model

    path = build_model(spec, cache_dir or DEFAULT_CACHE_DIR)
    return lowest_of_passes(device, [path], settings, passes)[0]


ProbeTimer = Callable[[Device, ConvSpec, BenchmarkSettings], float]


def _table_settings(doc: dict) -> BenchmarkSettings:
    recorded = doc.get("settings") or {}
    given = {k: recorded[k] for k in ("threads", "runs", "warmup", "use_xnnpack") if k in recorded}
    return BenchmarkSettings(**given)


def _host_for(doc: dict) -> Device:
    """This computer, pinned to the core the table was profiled on when this process may run there, else to the
    first core it may run on: a process started with `taskset -c 1` (the other core busy with a benchmark) times the
    probe on its own core, not on the busy one."""
    import os

    from profiler.measure.devices.host import HostDevice

    allowed = sorted(os.sched_getaffinity(0))
    recorded = (doc["device"].get("affinity") or [None])[0]
    return HostDevice(cpu=recorded if recorded in allowed else allowed[0])


def lowest_probe(time_once: Callable[[], float], table_ms: float, bound: float = PROBE_BOUND,
                 retries: int = PROBE_RETRIES, gap_s: float = PROBE_RETRY_GAP_S,
                 sleep: Callable[[float], None] = time.sleep) -> float:
    """The probe's time here: timed again (up to `retries` times, `gap_s` apart) while slower than the table's by more
    than `bound`, the lowest kept. A faster probe is not retried: lowest-of can only make it faster still."""
    here = time_once()
    for _ in range(retries):
        if here <= table_ms * (1 + bound):
            break
        sleep(gap_s)
        here = min(here, time_once())
    return here


def check_table_device(table, device: Device | None = None, allow_other_device: bool = False,
                       timer: ProbeTimer | None = None) -> DeviceCheck | None:
    """Check that `table` (a LatencyTable) describes `device` (None: this computer, for a host table; a phone table
    with no phone attached is not checked: None). Times the reference probe on a host whose fingerprint matches.
    Raises OtherDeviceError (exit 2) for another device unless `allow_other_device`; the DeviceCheck says what was
    compared and carries the warning."""
    doc = table.doc
    path = str(table.path) if table.path is not None else "(unsaved table)"
    if device is None and doc["device"].get("name") != HOST:
        return None
    owned = device is None
    device = _host_for(doc) if owned else device
    try:
        here = device.info()
        _, _, differences = compare_fingerprints(doc["device"], here)
        probe_ms = None
        recorded = recorded_probe(doc)
        if not differences and recorded is not None and here.get("name") == HOST:
            settings = _table_settings(doc)
            probe_ms = lowest_probe(lambda: (timer or time_reference_probe)(device, recorded[0], settings),
                                    recorded[1], gap_s=PROBE_RETRY_GAP_S)
    finally:
        if owned:
            device.close()
    check = assess(path, doc, here, probe_ms, allow_other_device)
    if not check.same_device and not allow_other_device:
        raise OtherDeviceError(check.warning)
    return check


def check_record(check: DeviceCheck | None) -> dict | None:
    """What an output file records: DeviceCheck.to_dict(), or None when nothing was checked."""
    return None if check is None else check.to_dict()
