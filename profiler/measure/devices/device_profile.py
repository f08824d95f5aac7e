"""Phone profiles as data (profiler/measure/devices/profiles/*.json): which phones a `--device` name accepts and how to
measure on them (default threads/runs/warm-up, big-core fallback mask, cool-down thresholds)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from profiler.errors import FgnasError

PROFILE_DIR = Path(__file__).parent / "profiles"


@dataclass(frozen=True)
class Soc:
    """One hardware variant of a profile: the ro.product.model patterns (full regex match) and board platforms."""

    name: str
    model_patterns: tuple[str, ...]
    platforms: tuple[str, ...]

    def matches_model(self, model: str) -> bool:
        return any(re.fullmatch(p, model) for p in self.model_patterns)


@dataclass(frozen=True)
class Cooldown:
    """Wait before each batch until every considered thermal zone is below `start_below_c` (at most `max_wait_s`)."""

    start_below_c: float
    poll_s: float
    max_wait_s: float
    zone_types: tuple[str, ...]  # regexes on thermal_zone*/type; empty = every zone

    def considers(self, zone_type: str) -> bool:
        return not self.zone_types or any(re.search(p, zone_type) for p in self.zone_types)


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    socs: tuple[Soc, ...]
    required_props: dict
    threads: int
    runs: int
    warmup: int
    big_core_mask_fallback: int
    cooldown: Cooldown

    @property
    def expected_models(self) -> str:
        return ", ".join(p for soc in self.socs for p in soc.model_patterns)

    def soc_for(self, props: dict[str, str]) -> Soc | None:
        """The variant this phone is, or None when its model is not one this profile accepts."""
        model = props.get("ro.product.model", "")
        platform = props.get("ro.board.platform", "")
        candidates = [soc for soc in self.socs if soc.matches_model(model)]
        return next((soc for soc in candidates if platform in soc.platforms), candidates[0] if candidates else None)

    def mismatch(self, props: dict[str, str]) -> str | None:
        """Why this phone is not the profile's (None when it is)."""
        for key, value in self.required_props.items():
            if props.get(key) != value:
                return f"{key}={props.get(key, '')!r} (the {self.name} profile needs {value!r})"
        if self.soc_for(props) is None:
            return (f"model {props.get('ro.product.model', '')!r} (the {self.name} profile expects "
                    f"{self.expected_models})")
        return None


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.json"))


def load_profile(name: str) -> DeviceProfile:
    path = PROFILE_DIR / f"{name}.json"
    if not path.is_file():
        raise FgnasError(f"no phone profile {name!r}: choose one of {', '.join(profile_names())}")
    d = json.loads(path.read_text())
    return DeviceProfile(
        name=d["name"],
        description=d["description"],
        socs=tuple(Soc(s["name"], tuple(s["model_patterns"]), tuple(s["platforms"])) for s in d["socs"]),
        required_props=dict(d["required_props"]),
        threads=int(d["threads"]),
        runs=int(d["runs"]),
        warmup=int(d["warmup"]),
        big_core_mask_fallback=int(d["big_core_mask_fallback"], 16),
        cooldown=Cooldown(float(d["cooldown"]["start_below_c"]), float(d["cooldown"]["poll_s"]),
                          float(d["cooldown"]["max_wait_s"]), tuple(d["cooldown"]["zone_types"])),
    )


def big_core_mask(max_freq_khz: dict[int, int]) -> int | None:
    """Taskset mask of the fastest cluster: the CPUs whose cpuinfo_max_freq equals the highest one.

    On a big.LITTLE phone that is the big cluster (Pixel 1: cpu2-3 -> 0xc; Galaxy S8: cpu4-7 -> 0xf0). None when no
    frequency could be read (emulators, locked-down kernels): the caller falls back to the profile's mask.
    """
    if not max_freq_khz:
        return None
    top = max(max_freq_khz.values())
    return sum(1 << cpu for cpu, freq in max_freq_khz.items() if freq == top)
