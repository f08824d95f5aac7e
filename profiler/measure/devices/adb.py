"""Android phones and emulators over ADB: TFLite's `benchmark_model` pushed to the phone and run on its big cores.

One registered device per profile in profiler/measure/devices/profiles/ (`pixel1`, `galaxy-s8`, `emulator`, `android`).
`benchmark_model` prints no per-run times, only count/first/curr/min/max/avg/std of the timed runs, so a
Measurement's median_ms and mean_ms both hold the tool's average (extra["median_source"] says so). The tool times in
whole microseconds: an op whose every run took under 1 us averages 0, which we report as 0.5 us (the middle of
[0, 1) us) with extra["below_resolution"] set, so a fit never sees a zero latency.
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from profiler.errors import DeviceFault, FgnasError
from profiler.measure.benchmark_output import BenchmarkOutput, BenchmarkOutputError, parse_benchmark_output
from profiler.measure.devices import register_device
from profiler.measure.devices.adb_link import AdbLink
from profiler.measure.devices.base import BenchmarkSettings, Device, Measurement
from profiler.measure.devices.device_profile import Cooldown, DeviceProfile, big_core_mask, load_profile, profile_names
from profiler.measure.devices.phone_readings import (
    CPU_GLOBS,
    THERMAL_GLOBS,
    ThermalReading,
    cpu_values,
    max_freqs_khz,
    parse_getprop,
    parse_grep_files,
    thermal_readings,
)

RESOLUTION_US = 1.0  # benchmark_model's clock: whole microseconds
REMOTE_DIR = "/data/local/tmp/fgnas"
REMOTE_BINARY = f"{REMOTE_DIR}/benchmark_model"
PREBUILT_URL = ("https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/tools/nightly/"
                "latest/android_aarch64_benchmark_model")
_STATUS = re.compile(r"__fgnas_rc=(\d+)\s*$")
_STATUS_SUFFIX = " 2>&1; echo __fgnas_rc=$?"
_GLOB_SAFE = re.compile(r"[A-Za-z0-9_/.*?\[\]-]+")
_FLAG = re.compile(r"--(\w+)=")
_FINGERPRINT_PROPS = {
    "model": "ro.product.model", "manufacturer": "ro.product.manufacturer", "device": "ro.product.device",
    "board": "ro.product.board", "platform": "ro.board.platform", "hardware": "ro.hardware",
    "android_release": "ro.build.version.release", "sdk": "ro.build.version.sdk",
    "build_fingerprint": "ro.build.fingerprint", "abi": "ro.product.cpu.abi",
}


def resolve_benchmark_binary(path: str | Path | None) -> Path:
    """--benchmark-binary, else FGNAS_BENCHMARK_MODEL; a missing one is a one-line error saying where to get it."""
    chosen = path or os.environ.get("FGNAS_BENCHMARK_MODEL")
    if not chosen:
        raise FgnasError(f"phones need TFLite's benchmark_model: download the official Android arm64 prebuilt from "
                         f"{PREBUILT_URL} and pass it with --benchmark-binary PATH (or set FGNAS_BENCHMARK_MODEL)")
    binary = Path(chosen).expanduser()
    if not binary.is_file():
        raise FgnasError(f"benchmark binary {binary} does not exist: download the official Android arm64 prebuilt "
                         f"from {PREBUILT_URL} and pass its path with --benchmark-binary (or FGNAS_BENCHMARK_MODEL)")
    return binary


@dataclass(frozen=True)
class Glob:
    """A path pattern for the phone's shell to expand (the /sys files of every CPU or thermal zone). Only path
    characters and * ? [ ] are allowed, so it can go unquoted without any of it being shell syntax."""

    pattern: str

    def __post_init__(self) -> None:
        if not _GLOB_SAFE.fullmatch(self.pattern):
            raise ValueError(f"glob {self.pattern!r} has characters the phone's shell would interpret")


def shell_command(*argv: str | int | Glob, status: bool = False) -> str:
    """The one way a command line for the phone is built: every argument shlex.quote'd, so a file name, flag value or
    serial is one word and never shell syntax (`;`, `$(...)`, quotes, spaces); a Glob stays a pattern. With `status`,
    stderr is merged and the exit status echoed, because the legacy shell service does not return it."""
    words = [a.pattern if isinstance(a, Glob) else shlex.quote(str(a)) for a in argv]
    return " ".join(words) + (_STATUS_SUFFIX if status else "")


def split_status(text: str) -> tuple[str, int | None]:
    """Our commands end with `; echo __fgnas_rc=$?` because the legacy shell service does not return exit codes."""
    m = _STATUS.search(text)
    return (text[:m.start()], int(m.group(1))) if m else (text, None)


def remote_model_path(content: bytes) -> str:
    """Where a model goes on the phone: its sha256 (first 16 hex digits) under REMOTE_DIR/models."""
    return f"{REMOTE_DIR}/models/{hashlib.sha256(content).hexdigest()[:16]}.tflite"


def measurement_from_output(out: BenchmarkOutput, started: float, finished: float, extra: dict) -> Measurement:
    """The tool's statistics of the timed runs as a Measurement (ms); everything else it reported goes to extra."""
    inf = out.inference
    avg_us = inf.avg_us if inf.avg_us > 0 else RESOLUTION_US / 2
    return Measurement(
        median_ms=avg_us / 1e3, mean_ms=avg_us / 1e3, std_ms=inf.std_us / 1e3, min_ms=inf.min_us / 1e3,
        count=inf.count, warmup=out.warmup.count, started_at=started, finished_at=finished,
        extra={
            **extra,
            "median_source": "benchmark_model average (the tool prints no per-run times)",
            "below_resolution": inf.avg_us <= 0,
            "max_ms": inf.max_us / 1e3, "init_ms": out.init_us / 1e3,
            "first_inference_ms": out.first_inference_us / 1e3, "warmup_avg_ms": out.warmup_avg_us / 1e3,
            "memory_overall_mb": out.memory_overall_mb, "output_format": out.variant,
        },
    )


def temps_by_name(readings: list[ThermalReading]) -> dict[str, float]:
    """Temperatures keyed by zone type, or by zone where a type repeats (many kernels name several zones 'cpu')."""
    types = [r.type for r in readings]
    return {(r.type if r.type and types.count(r.type) == 1 else f"{r.zone}:{r.type}"): r.temp_c for r in readings}


def hottest(readings: list[ThermalReading], cooldown: Cooldown) -> float | None:
    temps = [r.temp_c for r in readings if cooldown.considers(r.type)]
    return max(temps) if temps else None


class AdbDevice(Device):
    """A phone (or emulator) reached with adb-shell. Connects, checks the model and installs benchmark_model at once."""

    def __init__(self, profile: DeviceProfile, serial: str | None, benchmark_binary: str | Path | None = None,
                 force: bool = False, cooldown: Cooldown | None = None, link: AdbLink | None = None):
        if not serial:
            raise FgnasError(f"--device {profile.name} needs --serial: a USB serial from `adb devices`, or HOST:PORT "
                             f"for TCP (an emulator's adbd, or a phone after `adb tcpip 5555`)")
        self.name = profile.name
        self.serial = serial
        self.profile = profile
        self.cooldown = cooldown or profile.cooldown
        self.forced = force
        self.binary = resolve_benchmark_binary(benchmark_binary)
        self.default_settings = BenchmarkSettings(threads=profile.threads, runs=profile.runs, warmup=profile.warmup)
        self.link = link or AdbLink(serial)
        self.link.connect()
        self._pushed: set[str] = set()
        self._last_cooldown: dict = {}
        try:
            self._fingerprint = self._inspect()
            self._install_binary()
        except BaseException:
            self.link.close()
            raise

    # ---- connect-time checks ----------------------------------------------------------------------------------------

    def _grep(self, globs: tuple[str, ...]) -> dict[str, str]:
        return parse_grep_files(self.link.shell(shell_command("grep", "-H", ".", *map(Glob, globs))))

    def _inspect(self) -> dict:
        props = parse_getprop(self.link.shell(shell_command("getprop")))
        problem = self.profile.mismatch(props)
        if problem and not self.forced:
            raise FgnasError(f"phone {self.serial} reports {problem}: use the profile that matches it (--device "
                             f"android takes any phone) or pass --force to measure it anyway")
        cpu_files = self._grep(CPU_GLOBS)
        freqs = max_freqs_khz(cpu_files)
        mask = big_core_mask(freqs)
        soc = self.profile.soc_for(props)
        info = {"name": self.profile.name, "kind": "android", "serial": self.serial}
        info.update({key: props.get(prop, "") for key, prop in _FINGERPRINT_PROPS.items()})
        info.update({
            "soc": soc.name if soc and soc.name else props.get("ro.board.platform", ""),
            "emulator": props.get("ro.kernel.qemu") == "1",
            "kernel": self.link.shell(shell_command("uname", "-r")).strip(),
            "max_freq_khz": {str(cpu): f for cpu, f in freqs.items()},
            "governors": {str(cpu): g for cpu, g in cpu_values(cpu_files, "scaling_governor").items()},
            "big_core_mask": f"{mask or self.profile.big_core_mask_fallback:x}",
            "big_core_mask_source": "cpufreq" if mask else "profile fallback",
            "profile_mismatch": problem,
            "thermal_at_connect_c": temps_by_name(thermal_readings(self._grep(THERMAL_GLOBS))),
        })
        self.mask = info["big_core_mask"]
        return info

    def _install_binary(self) -> None:
        self.link.shell(shell_command("mkdir", "-p", f"{REMOTE_DIR}/models"))
        self.link.push(self.binary, REMOTE_BINARY)
        self.link.shell(shell_command("chmod", "755", REMOTE_BINARY))
        text, status = split_status(self.link.shell(shell_command(REMOTE_BINARY, "--help", status=True)))
        if "--graph" not in text:
            first = text.strip().splitlines()[0] if text.strip() else f"exit status {status}"
            raise FgnasError(f"{self.binary} does not run on phone {self.serial} ({self._fingerprint['abi']}): "
                             f"{first}. Use the Android arm64 build of benchmark_model from {PREBUILT_URL}")
        self._tool_flags = set(_FLAG.findall(text))
        self._fingerprint["benchmark_tool"] = {
            "file": self.binary.name,
            "sha256": hashlib.sha256(self.binary.read_bytes()).hexdigest(),
            "output_format": None,  # filled in by the first benchmark
            "has_use_xnnpack_flag": "use_xnnpack" in self._tool_flags,
        }

    # ---- Device interface -------------------------------------------------------------------------------------------

    def info(self) -> dict:
        return {**self._fingerprint, "reconnects": self.link.reconnects, "forced": self.forced}

    def thermal(self) -> list[ThermalReading]:
        return thermal_readings(self._grep(THERMAL_GLOBS))

    def cool_down(self) -> dict:
        """Wait until the hottest considered zone is below the profile's threshold (at most max_wait_s)."""
        started = time.monotonic()
        temp = hottest(self.thermal(), self.cooldown)
        while temp is not None and temp >= self.cooldown.start_below_c \
                and time.monotonic() - started < self.cooldown.max_wait_s:
            time.sleep(self.cooldown.poll_s)
            temp = hottest(self.thermal(), self.cooldown)
        self._last_cooldown = {"waited_s": round(time.monotonic() - started, 3), "hottest_c": temp,
                               "still_hot": temp is not None and temp >= self.cooldown.start_below_c}
        return self._last_cooldown

    def prepare(self, model_paths: list[Path]) -> None:
        """Before each batch: let the phone cool down, then push the batch's models."""
        self.cool_down()
        for path in model_paths:
            self._ensure_pushed(Path(path))

    def _ensure_pushed(self, model_path: Path) -> str:
        """The model on the phone, named by its content: the user's file name never reaches the phone (or its shell),
        and two different models with one name (two runs' model.tflite) are both pushed and timed."""
        try:
            content = model_path.read_bytes()
        except FileNotFoundError:
            raise FgnasError(f"model {model_path} does not exist") from None
        except IsADirectoryError:
            raise FgnasError(f"model {model_path} is a directory, not a .tflite file") from None
        remote = remote_model_path(content)
        if remote not in self._pushed:
            self.link.push_bytes(content, remote, model_path.name)
            self._pushed.add(remote)
        return remote

    def command(self, remote_model: str, settings: BenchmarkSettings) -> str:
        """Only flags this build lists in its --help: tools before 2019 fail on min_secs, before 2020 on use_xnnpack
        (and did not use XNNPACK)."""
        flags = {"graph": remote_model, "num_threads": settings.threads, "num_runs": settings.runs,
                 "warmup_runs": settings.warmup, "min_secs": 0, "warmup_min_secs": 0,
                 "use_xnnpack": str(settings.use_xnnpack).lower()}
        args = [f"--{k}={v}" for k, v in flags.items() if k in self._tool_flags]
        return shell_command("taskset", self.mask, REMOTE_BINARY, *args, status=True)

    def benchmark(self, model_path: Path, settings: BenchmarkSettings) -> Measurement:
        model_path = Path(model_path)
        remote = self._ensure_pushed(model_path)
        readings = self.thermal()
        started = time.time()
        text, status = split_status(self.link.shell(self.command(remote, settings), timeout_s=settings.timeout_s))
        finished = time.time()
        try:
            out = parse_benchmark_output(text)
        except BenchmarkOutputError as exc:
            raise DeviceFault(f"benchmark_model failed on phone {self.serial} for {model_path.name} "
                              f"(exit status {status}): {exc}") from exc
        self._fingerprint["benchmark_tool"]["output_format"] = out.variant
        return measurement_from_output(out, started, finished, {
            "serial": self.serial, "big_core_mask": self.mask,
            "temps_c": temps_by_name(readings),
            "hottest_c": hottest(readings, self.cooldown),
            "cooldown": self._last_cooldown, "reconnects": self.link.reconnects,
        })

    def close(self) -> None:
        self.link.close()


def _factory(profile_name: str):
    def create(serial: str | None = None, benchmark_binary: str | Path | None = None, force: bool = False,
               **options) -> AdbDevice:
        return AdbDevice(load_profile(profile_name), serial, benchmark_binary, force, **options)

    create.__doc__ = f"A phone checked against the {profile_name} profile."
    return create


for _name in profile_names():
    register_device(_name)(_factory(_name))
