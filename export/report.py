"""Predicted (latency table) against measured (device) latency, per layer and for the whole exported model, and the
cost of splitting a layer into several operations (the layer against one conv of the same FLOPs).

Each layer is converted alone (its input and skip tensors as model inputs) and timed on the device; the table prices
the very same .tflite ops (profiler.latency.tflite_reader), so both columns describe one graph. An op the table cannot
price is listed as unpriced, never counted as zero.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from export.files import atomic_write_bytes
from export.plan import PrunedLayer, PrunedPlan
from export.tflite import layer_model
from profiler.latency.table import LatencyTable
from profiler.measure.devices.base import BenchmarkSettings, Device
from profiler.spec import ConvSpec, flops

MEASURE_PASSES = 3  # one median of a small model on a shared machine can be 10-40% off (docs/benchmarks.md)


@dataclass(frozen=True)
class Priced:
    ms: float | None  # None when nothing could be priced
    unpriced: tuple[str, ...]  # ops the table has no model for


@dataclass(frozen=True)
class LayerLatency:
    name: str
    convs: int  # kept operations
    channels: int  # alive output channels
    tflite_ops: int
    predicted_ms: float | None
    measured_ms: float | None
    unpriced: tuple[str, ...]
    single_conv: str | None  # the one conv of the same FLOPs, for layers split into several operations
    single_conv_ms: float | None

    @property
    def split_cost_ms(self) -> float | None:
        if self.measured_ms is None or self.single_conv_ms is None:
            return None
        return self.measured_ms - self.single_conv_ms

    @property
    def error(self) -> float | None:
        """(predicted - measured) / measured."""
        if self.predicted_ms is None or not self.measured_ms:
            return None
        return (self.predicted_ms - self.measured_ms) / self.measured_ms

    def to_dict(self) -> dict:
        return {**asdict(self), "split_cost_ms": self.split_cost_ms, "error": self.error}


@dataclass(frozen=True)
class LatencyReport:
    device: dict
    table: dict | None  # path, device, version, content hash
    layers: tuple[LayerLatency, ...]
    model_predicted_ms: float | None
    model_measured_ms: float | None
    model_unpriced: tuple[str, ...]
    arch_predicted_ms: float | None  # what the search predicted for this architecture

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [layer.to_dict() for layer in self.layers]
        return d


def price_model(table: LatencyTable | None, path: Path) -> Priced:
    """The table's latency of a .tflite model (LatencyTable.price_model: its ops', the invoke overhead paid once, and
    what they cost more inside one network); ops it cannot price are named, not counted."""
    from profiler.latency.tflite_reader import op_label, read_ops

    if table is None:
        return Priced(None, ())
    price = table.price_model(read_ops(path))
    return Priced(price.total_ms, tuple(op_label(entry) for entry, _ in price.unpriced))


def single_conv(plan: PrunedPlan, layer: PrunedLayer) -> ConvSpec | None:
    """For a layer computed by several convs: one normal conv with the layer's input, stride and largest kernel whose
    FLOPs are closest to the sum of the layer's convs (None for a layer of one conv)."""
    if len(layer.ops) < 2:
        return None
    h, w = layer.in_hw
    cin = plan.shape(layer.input)[2]
    specs = [ConvSpec(h, w, op.cin, op.cout, op.kernel, op.stride, op.cout if op.depthwise else 1, "none")
             for op in layer.ops]
    kernel = max(layer.ops, key=lambda op: flops(specs[layer.ops.index(op)])).kernel
    per_channel = flops(ConvSpec(h, w, cin, 1, kernel, layer.stride))
    cout = max(1, round(sum(flops(s) for s in specs) / per_channel))
    return ConvSpec(h, w, cin, cout, kernel, layer.stride)


def latency_report(plan: PrunedPlan, model_path: Path, device: Device, settings: BenchmarkSettings,
                   table: LatencyTable | None, work_dir: Path, arch_predicted_ms: float | None = None,
                   progress=lambda message: None) -> LatencyReport:
    """Measure the whole model and each layer alone on `device` (the lowest median of MEASURE_PASSES interleaved
    passes over all of them, as the sweep measures: profiler.measure.interleaved); price the same graphs with
    `table`."""
    from profiler.latency.tflite_reader import read_ops
    from profiler.measure.interleaved import lowest_of_passes
    from profiler.measure.model_builder import build_model

    work_dir = Path(work_dir)
    paths, specs = [], []
    for i, layer in enumerate(plan.layers, start=1):
        paths.append(atomic_write_bytes(work_dir / f"layer_{i:03d}_{layer.name}.tflite", layer_model(plan, layer)))
        specs.append(single_conv(plan, layer))
    singles = {i: build_model(spec, work_dir / "single_convs") for i, spec in enumerate(specs) if spec}
    progress(f"timing {len(paths)} layers, {len(singles)} single convs and the whole model")
    timed = lowest_of_passes(device, [*paths, *singles.values(), model_path], settings, MEASURE_PASSES)
    single_ms = dict(zip(singles, timed[len(paths):-1]))
    layers = []
    for i, (layer, path, spec) in enumerate(zip(plan.layers, paths, specs)):
        priced = price_model(table, path)
        layers.append(LayerLatency(layer.name, len(layer.ops), layer.out_channels, len(read_ops(path)), priced.ms,
                                   timed[i], priced.unpriced, str(spec) if spec else None, single_ms.get(i)))
    whole = price_model(table, model_path)
    measured = timed[-1]
    table_info = None
    if table is not None:
        table_info = {"path": str(table.path) if table.path else None, "device": table.device.get("name"),
                      "table_version": table.table_version, "content_hash": table.content_hash}
    return LatencyReport(device.info(), table_info, tuple(layers), whole.ms, measured, whole.unpriced,
                         arch_predicted_ms)


def _ms(value: float | None) -> str:
    return f"{value:8.3f}" if value is not None and math.isfinite(value) else f"{'-':>8}"


def format_latency(report: LatencyReport) -> str:
    """The printed per-layer table: predicted vs measured, and the measured cost of splitting into several convs."""
    lines = [f"{'layer':<16} {'convs':>5} {'ch':>5} {'pred ms':>8} {'meas ms':>8} {'err':>6} {'1-conv':>8} "
             f"{'split':>8}"]
    for r in report.layers:
        err = f"{r.error * 100:+5.0f}%" if r.error is not None else f"{'-':>6}"
        lines.append(f"{r.name:<16} {r.convs:>5} {r.channels:>5} {_ms(r.predicted_ms)} {_ms(r.measured_ms)} {err} "
                     f"{_ms(r.single_conv_ms)} {_ms(r.split_cost_ms)}" + (f"  unpriced: {','.join(r.unpriced)}"
                                                                          if r.unpriced else ""))
    lp = sum(r.predicted_ms for r in report.layers if r.predicted_ms is not None) if report.table else None
    lm = sum(r.measured_ms for r in report.layers if r.measured_ms is not None)
    lines.append(f"{'sum of layers':<28} {_ms(lp)} {_ms(lm)}")
    total_err = ""
    if report.model_predicted_ms is not None and report.model_measured_ms:
        total_err = f" {(report.model_predicted_ms - report.model_measured_ms) / report.model_measured_ms * 100:+5.0f}%"
    lines.append(f"{'whole model':<28} {_ms(report.model_predicted_ms)} {_ms(report.model_measured_ms)}{total_err}"
                 + (f"  unpriced: {','.join(report.model_unpriced)}" if report.model_unpriced else ""))
    if report.arch_predicted_ms is not None:
        lines.append(f"search predicted {report.arch_predicted_ms:.3f} ms for this architecture")
    return "\n".join(lines)
