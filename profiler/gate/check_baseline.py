"""The stored measurement a relative check compares against: its JSON file and the device fingerprint it belongs to.

A model/reference ratio cancels the machine's speed, not its kind: another CPU micro-architecture, another runtime
build, or another thread count changes how the two networks compare. So a baseline records the device's full info and
is refused on a device whose fingerprint differs. Fields that do not change the ratio (hostname, Python version, which
core the worker is pinned to, a phone's serial or temperature) are left out so that a CI runner may be replaced by an
identical one.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from profiler.atomic import atomic_write_text
from profiler.errors import FgnasError
from profiler.latency.device_check import CPU_FIELDS, lookup
from profiler.spec import ConvSpec

FORMAT = "fgnas-check-baseline"
FORMAT_VERSION = 1

# Device-info fields (dotted paths into Device.info()) that decide whether two runs' ratios are comparable; a field
# is compared when either side has it. Host: CPU (its model name and device_check.CPU_FIELDS) and runtime. Phones:
# model, SoC, ABI, OS and the benchmark binary.
FINGERPRINT_FIELDS = (
    "name", "cpu_model", *CPU_FIELDS, "machine", "runtime", "runtime_version",
    "manufacturer", "model", "soc", "platform", "abi", "sdk", "emulator", "benchmark_tool.sha256",
)
# Benchmark settings that change the ratio as much as the hardware does.
FINGERPRINT_SETTINGS = ("threads", "use_xnnpack")


def fingerprint(info: dict, settings: dict) -> dict:
    """The fields of a device's info and of the benchmark settings that a baseline must match."""
    found = {name: lookup(info, name) for name in FINGERPRINT_FIELDS}
    found.update({f"settings.{name}": settings.get(name) for name in FINGERPRINT_SETTINGS})
    return {k: v for k, v in found.items() if v is not None}


def fingerprint_mismatches(recorded: dict, current: dict) -> dict[str, tuple]:
    """{field: (recorded, current)} for every fingerprint field on which the two differ."""
    return {k: (recorded.get(k), current.get(k)) for k in sorted(set(recorded) | set(current))
            if recorded.get(k) != current.get(k)}


@dataclass(frozen=True)
class Baseline:
    """The per-pair latencies (medians, ms) of a model and the reference, measured interleaved on one device."""

    model_sha256: str
    model_name: str
    reference_spec: ConvSpec
    reference_sha256: str
    device: dict
    settings: dict
    model_ms: tuple[float, ...]
    reference_ms: tuple[float, ...]
    ratio: dict  # the Interval of model/reference, for people reading the file
    created_at: float = field(default_factory=time.time)

    @property
    def fingerprint(self) -> dict:
        return fingerprint(self.device, self.settings)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "created_at": self.created_at,
            "model": {"name": self.model_name, "sha256": self.model_sha256},
            "reference": {"spec": self.reference_spec.to_dict(), "sha256": self.reference_sha256},
            "fingerprint": self.fingerprint, "device": self.device, "settings": self.settings,
            "ratio": self.ratio,
            "pairs": [{"model_ms": m, "reference_ms": r} for m, r in zip(self.model_ms, self.reference_ms)],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Baseline:
        pairs = d["pairs"]
        return cls(model_sha256=d["model"]["sha256"], model_name=d["model"]["name"],
                   reference_spec=ConvSpec.from_dict(d["reference"]["spec"]),
                   reference_sha256=d["reference"]["sha256"], device=d["device"], settings=d["settings"],
                   model_ms=tuple(float(p["model_ms"]) for p in pairs),
                   reference_ms=tuple(float(p["reference_ms"]) for p in pairs),
                   ratio=d["ratio"], created_at=float(d["created_at"]))


def save_baseline(baseline: Baseline, path: Path) -> None:
    atomic_write_text(Path(path), json.dumps(baseline.to_dict(), indent=1, sort_keys=True) + "\n")


def load_baseline(path: Path) -> Baseline:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FgnasError(f"baseline {path} does not exist: record one with --update-baseline") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FgnasError(f"cannot read baseline {path}: {exc}; record it again with --update-baseline") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise FgnasError(f"{path} is not an fgnas-check baseline: record one with --update-baseline")
    if doc.get("format_version") != FORMAT_VERSION:
        raise FgnasError(f"baseline {path} has format_version {doc.get('format_version')}, this fgnas-check reads "
                         f"{FORMAT_VERSION}: record it again with --update-baseline")
    try:
        baseline = Baseline.from_dict(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise FgnasError(f"baseline {path} is malformed ({type(exc).__name__}: {exc}); record it again with "
                         f"--update-baseline") from None
    values = baseline.model_ms + baseline.reference_ms
    if len(baseline.model_ms) < 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise FgnasError(f"baseline {path} needs at least 2 pairs of positive latencies; record it again with "
                         f"--update-baseline")
    return baseline


def require_same_device(baseline: Baseline, path: Path, current: dict) -> None:
    """Refuse a baseline recorded on another kind of device (FgnasError, exit 2)."""
    diff = fingerprint_mismatches(baseline.fingerprint, current)
    if diff:
        shown = "; ".join(f"{k}: baseline {a!r}, here {b!r}" for k, (a, b) in diff.items())
        raise FgnasError(f"baseline {path} was recorded on another device ({shown}): a ratio does not carry across "
                         f"devices; record a baseline here with --update-baseline")
