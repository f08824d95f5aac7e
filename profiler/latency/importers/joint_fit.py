"""One joint, non-negative least-squares fit of per-condition latency models to whole-block measurements.

A published entry's latency is the sum of its ops' latencies: for a conv, `a * MFLOPs + b` (the table's model, FLOPs
= 2 x MACs); for another op, `a * units + b`. Every `a` and `b` is a sum of shared parameters, so the model is linear
in the parameters and one bounded least-squares problem (scipy's `lsq_linear`, all parameters >= 0) fits all blocks
at once. Rows are divided by the measured latency so the fit minimises relative error, as the errors are reported.

Sharing is necessary, not a convenience: within one block only the sum of its ops is seen, so a separate slope and
intercept per condition is not identifiable (every depthwise condition occurs in one group of blocks, whose latencies
it could absorb alone). A `Sharing` names the parameters each op uses:
- convs are placed by their pyramid level, round(log2(input resolution / H)), so OFA's 17 resolutions share one set
  of slopes per level and a held-out resolution can be predicted; convs on a 1x1 map (SE, the head) share "@1x1";
- 1x1 convs share a slope per level whatever their activation (a fused ReLU/ReLU6 costs next to nothing);
- the intercept is one "conv:b" for all convs (only the per-block sum of intercepts is observed);
- depthwise slopes are shared per (stride, level) across kernel sizes, or kept per kernel: see SHARINGS;
- a non-conv op gets `a` per unit, and a `b` only when the data has at least two distinct sizes of it (one size
  cannot tell a slope from an intercept; all of it then goes to the slope); a format may tie an op's slope to
  another op's (`ties`) where its entries cannot separate the two.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import lsq_linear

from profiler.latency.importers.blocks import LutEntry
from profiler.spec import ConvSpec, flops

# Op units are rescaled by this in the design matrix so that all columns have comparable magnitudes.
UNIT_SCALE = 1e6


def level(spec: ConvSpec, resolution: int) -> str:
    """Where a conv sits in the network: 'L<k>' for input H = resolution / 2^k, '1x1' on a pooled map."""
    if spec.h == 1 and spec.w == 1:
        return "1x1"
    return f"L{round(math.log2(resolution / spec.h))}"


def _slope_dw_per_stride(spec: ConvSpec, resolution: int) -> tuple[str, ...]:
    where = level(spec, resolution)
    if spec.conv_type == "depthwise":
        return (f"dw:s{spec.stride}@{where}",)
    return (f"{spec.conv_type}:k{spec.kernel}:s{spec.stride}@{where}",)


def _slope_dw_per_kernel(spec: ConvSpec, resolution: int) -> tuple[str, ...]:
    where = level(spec, resolution)
    return (f"{spec.conv_type}:k{spec.kernel}:s{spec.stride}@{where}",)


def _slope_dw_per_stride_plus_kernel(spec: ConvSpec, resolution: int) -> tuple[str, ...]:
    """Depthwise slope = a per-(stride, level) base + a per-kernel surcharge shared by all levels (none for k7)."""
    base = _slope_dw_per_stride(spec, resolution)
    if spec.conv_type == "depthwise" and spec.kernel != 7:
        return base + (f"dw:k{spec.kernel}",)
    return base


def _intercept_shared(spec: ConvSpec, resolution: int) -> tuple[str, ...]:
    return ("conv:b",)


@dataclass(frozen=True)
class Sharing:
    """Which parameters a conv's slope and intercept are sums of."""

    name: str
    conv_slope: Callable[[ConvSpec, int], tuple[str, ...]]
    conv_intercept: Callable[[ConvSpec, int], tuple[str, ...]]
    description: str


SHARINGS: dict[str, Sharing] = {
    sharing.name: sharing
    for sharing in (
        Sharing("dw-per-stride", _slope_dw_per_stride, _intercept_shared,
                "1x1 slope per level; depthwise slope per (stride, level) shared by kernel sizes; one conv intercept"),
        Sharing("dw-per-kernel", _slope_dw_per_kernel, _intercept_shared,
                "1x1 slope per level; depthwise slope per (kernel, stride, level); one conv intercept"),
        Sharing("dw-per-stride+kernel", _slope_dw_per_stride_plus_kernel, _intercept_shared,
                "as dw-per-stride, plus a non-negative per-kernel depthwise surcharge (k3, k5) shared by levels"),
    )
}


@dataclass(frozen=True)
class JointFit:
    """Fitted parameters (conv slopes in ms/MFLOP, op slopes in ms per UNIT_SCALE units, intercepts in ms)."""

    sharing: Sharing
    params: dict[str, float]
    op_intercepts: frozenset[str]  # ops that have a fitted intercept
    ties: Mapping[str, str]  # op -> the op whose slope it uses

    def conv_model(self, spec: ConvSpec, resolution: int) -> tuple[float, float]:
        """(a in ms per MFLOP, b in ms) for a conv measured in a network of this input resolution."""
        a = sum(self.params[p] for p in self.sharing.conv_slope(spec, resolution))
        b = sum(self.params[p] for p in self.sharing.conv_intercept(spec, resolution))
        return a, b

    def op_model(self, op: str) -> tuple[float, float]:
        """(a in ms per unit, b in ms)."""
        b = self.params[f"{op}:b"] if op in self.op_intercepts else 0.0
        return self.params[f"{self.ties.get(op, op)}:a"] / UNIT_SCALE, b

    def predict(self, entry: LutEntry) -> float:
        total = 0.0
        for spec in entry.convs:
            a, b = self.conv_model(spec, entry.resolution)
            total += a * flops(spec) / 1e6 + b
        for use in entry.ops:
            a, b = self.op_model(use.op)
            total += a * use.units + b
        return total


def op_intercepts(entries: Sequence[LutEntry]) -> frozenset[str]:
    sizes: dict[str, set[float]] = {}
    for entry in entries:
        for use in entry.ops:
            sizes.setdefault(use.op, set()).add(use.units)
    return frozenset(op for op, seen in sizes.items() if len(seen) >= 2)


def _row(entry: LutEntry, sharing: Sharing, with_b: frozenset[str], ties: Mapping[str, str]) -> dict[str, float]:
    row: dict[str, float] = {}
    for spec in entry.convs:
        mflops = flops(spec) / 1e6
        for p in sharing.conv_slope(spec, entry.resolution):
            row[p] = row.get(p, 0.0) + mflops
        for p in sharing.conv_intercept(spec, entry.resolution):
            row[p] = row.get(p, 0.0) + 1.0
    for use in entry.ops:
        slope = f"{ties.get(use.op, use.op)}:a"
        row[slope] = row.get(slope, 0.0) + use.units / UNIT_SCALE
        if use.op in with_b:
            row[f"{use.op}:b"] = row.get(f"{use.op}:b", 0.0) + 1.0
    return row


def fit(entries: Sequence[LutEntry], sharing: Sharing, ties: Mapping[str, str] | None = None,
        with_b: frozenset[str] | None = None) -> JointFit:
    """The joint fit over all `entries`; `with_b` fixes which ops get an intercept (default: from these entries)."""
    ties = dict(ties or {})
    with_b = op_intercepts(entries) if with_b is None else with_b
    rows = [_row(entry, sharing, with_b, ties) for entry in entries]
    names = sorted({p for row in rows for p in row})
    column = {p: j for j, p in enumerate(names)}
    design = np.zeros((len(rows), len(names)))
    for i, row in enumerate(rows):
        for p, value in row.items():
            design[i, column[p]] = value
    y = np.array([entry.mean_ms for entry in entries])
    result = lsq_linear(design / y[:, None], np.ones_like(y), bounds=(0.0, np.inf), method="bvls")
    return JointFit(sharing, {p: float(result.x[column[p]]) for p in names}, with_b, ties)


def held_out_predictions(entries: Sequence[LutEntry], sharing: Sharing, group: Callable[[LutEntry], object],
                         ties: Mapping[str, str] | None = None) -> list[float | None]:
    """Each entry predicted by a fit to the entries of all other groups; None where that fit lacks a parameter
    the entry needs (it alone carried it, e.g. a single stem entry)."""
    with_b = op_intercepts(entries)
    predictions: list[float | None] = [None] * len(entries)
    for key in dict.fromkeys(group(entry) for entry in entries):
        held = [i for i, entry in enumerate(entries) if group(entry) == key]
        kept = [entry for entry in entries if group(entry) != key]
        fitted = fit(kept, sharing, ties, with_b)
        for i in held:
            needed = _row(entries[i], sharing, with_b, fitted.ties)
            if all(p in fitted.params for p in needed):
                predictions[i] = fitted.predict(entries[i])
    return predictions


def relative_errors(entries: Sequence[LutEntry], predictions: Sequence[float | None]) -> list[float]:
    """|predicted - published| / published for the entries that have a prediction."""
    return [abs(p - e.mean_ms) / e.mean_ms for e, p in zip(entries, predictions) if p is not None]
