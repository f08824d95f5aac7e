"""The Device interface: every place we can run a .tflite model (this computer, a phone over ADB) implements it."""
from __future__ import annotations

import re
import statistics
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class BenchmarkSettings:
    threads: int = 1
    runs: int = 30
    warmup: int = 5
    use_xnnpack: bool = True
    timeout_s: float = 120.0

    def to_dict(self) -> dict:
        return asdict(self)

    def overridden(self, runs: int | None = None, warmup: int | None = None,
                   threads: int | None = None) -> BenchmarkSettings:
        """These settings with the given (not None) values replaced."""
        given = {"runs": runs, "warmup": warmup, "threads": threads}
        return replace(self, **{k: v for k, v in given.items() if v is not None})


@dataclass(frozen=True)
class Measurement:
    """Latency of one model on one device, in milliseconds; timestamps are Unix seconds."""

    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    count: int
    warmup: int
    started_at: float
    finished_at: float
    extra: dict = field(default_factory=dict)  # device-specific facts (temperatures, tool version, ...)

    @classmethod
    def from_samples(cls, samples_ms: list[float], warmup: int, started_at: float, finished_at: float,
                     extra: dict | None = None) -> Measurement:
        return cls(
            median_ms=statistics.median(samples_ms),
            mean_ms=statistics.fmean(samples_ms),
            std_ms=statistics.pstdev(samples_ms),
            min_ms=min(samples_ms),
            count=len(samples_ms),
            warmup=warmup,
            started_at=started_at,
            finished_at=finished_at,
            extra=extra or {},
        )

    @property
    def spread(self) -> float:
        """Relative spread (std / median): the stability guard re-measures when this is too high."""
        return self.std_ms / self.median_ms if self.median_ms > 0 else float("inf")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Measurement:
        return cls(**d)


class Device(ABC):
    """A place to run models. Implementations: profiler.measure.devices.host.HostDevice, the ADB device."""

    name: str
    # What a measurement on this device uses unless the user says otherwise (a phone's profile sets its own).
    default_settings: BenchmarkSettings = BenchmarkSettings()

    @abstractmethod
    def info(self) -> dict:
        """A fingerprint: name, CPU model, OS, runtime and version, threads, affinity (and more for phones)."""

    @abstractmethod
    def benchmark(self, model_path: Path, settings: BenchmarkSettings) -> Measurement:
        """Time one .tflite model. Raises DeviceFault when the device fails after its own retries."""

    def prepare(self, model_paths: list[Path]) -> None:  # noqa: B027 (optional hook: nothing to do by default)
        """Called by the sweep before each batch of benchmarks (a phone pushes the batch's models here)."""

    def close(self) -> None:  # noqa: B027 (optional hook: nothing to release by default)
        """Release connections and worker processes."""

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_VENDORS = {"AuthenticAMD": "amd", "GenuineIntel": "intel"}


def identity_name(info: dict) -> str:
    """A device's name as `Device.info()` describes it, the file name of its latency table: host-amd-f26m2s1 (CPU
    vendor, family, model, stepping: the model name "AMD EPYC" covers several micro-architectures), pixel1-pixel."""
    cpu = info.get("cpu") if isinstance(info.get("cpu"), dict) else {}
    if cpu.get("family") is not None:
        vendor = _VENDORS.get(cpu.get("vendor"), str(cpu.get("vendor", "")))
        tail = f"{vendor}-f{cpu.get('family')}m{cpu.get('model')}s{cpu.get('stepping')}"
    else:
        tail = str(info.get("cpu_model") or info.get("model") or "")
    tail = re.sub(r"[^a-z0-9.]+", "-", tail.lower()).strip("-")
    name = str(info.get("name", "device"))
    return f"{name}-{tail}" if tail else name
