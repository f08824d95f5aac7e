"""Parse a search target such as `53ms`, `150MFLOPs`, `1.2GFLOPs` or `2.7Mparams` into a resource and a value.

Values are kept in the base unit each resource uses everywhere else in fgnas: latency in milliseconds (the latency
table's unit), FLOPs as a count (2 x MACs, `profiler.spec.flops`), parameters as a count.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from profiler.errors import FgnasError

RESOURCES = ("latency", "flops", "params")


@dataclass(frozen=True)
class Unit:
    resource: str
    scale: float  # multiply the written number by this to get the resource's base unit


def _with_prefixes(resource: str, base: str, factor: float = 1.0) -> dict[str, Unit]:
    prefixes = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9}
    return {p + base: Unit(resource, s * factor) for p, s in prefixes.items()}


# Suffix -> unit. Matching is case-sensitive so that `M` (mega) and `m` (milli, in `ms`) cannot be confused.
UNITS: dict[str, Unit] = {
    "ms": Unit("latency", 1.0),
    "us": Unit("latency", 1e-3),
    "s": Unit("latency", 1e3),
    **_with_prefixes("flops", "FLOPs"),
    **_with_prefixes("flops", "MACs", factor=2.0),  # a multiply-accumulate is two FLOPs (the paper's convention)
    **_with_prefixes("params", "params"),
}

_NUMBER = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]+)\s*$")


_FRACTION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*%\s*(" + "|".join(RESOURCES) + r")\s*$")


@dataclass(frozen=True)
class Target:
    resource: str  # one of RESOURCES
    value: float  # in the resource's base unit (ms, FLOPs, params); for a relative target, the fraction
    relative: bool = False  # `60%latency`: a fraction of the unpruned backbone's resource, known once it is built

    def __str__(self) -> str:
        if self.relative:
            return f"{self.value * 100:g}%{self.resource}"
        return format_resource(self.resource, self.value)

    def resolve(self, full_resource: float) -> Target:
        """The absolute target for a backbone whose unpruned resource is `full_resource`."""
        return Target(self.resource, self.value * full_resource) if self.relative else self


def parse_target(text: str) -> Target:
    """`53ms` -> Target("latency", 53.0); `1.2GFLOPs` -> Target("flops", 1.2e9); `2.7Mparams` -> Target("params",
    2.7e6); `60%latency` -> 60% of the unpruned backbone's predicted latency (resolved with Target.resolve)."""
    fraction = _FRACTION.match(text)
    if fraction:
        value = float(fraction.group(1)) / 100
        if not 0 < value <= 1:  # 100%: the unpruned network (the benchmarks pretrain that way)
            raise FgnasError(f"relative target {text!r} must be above 0% and at most 100% of the unpruned network")
        return Target(fraction.group(2), value, relative=True)
    match = _NUMBER.match(text)
    unit = UNITS.get(match.group(2)) if match else None
    if unit is None:
        known = ", ".join(sorted(UNITS))
        raise FgnasError(f"cannot read target {text!r}: write a number and a unit, e.g. 53ms, 150MFLOPs, 2.7Mparams, "
                         f"or a share of the unpruned network, e.g. 60%latency "
                         f"(units: {known})")
    value = float(match.group(1)) * unit.scale
    if not math.isfinite(value) or value <= 0:  # 1e309ms overflows to inf, which arch.json would store as Infinity
        raise FgnasError(f"target {text!r} must be positive and finite")
    return Target(unit.resource, value)


def format_resource(resource: str, value: float) -> str:
    """A human-readable amount: `5.31ms`, `40.6MFLOPs`, `0.27Mparams`."""
    if resource == "latency":
        return f"{value:.3g}ms"
    base = "FLOPs" if resource == "flops" else "params"
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{prefix}{base}"
    return f"{value:.3g}{base}"
