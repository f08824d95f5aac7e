"""Synthetic raw-log records with known coefficients, for the fit/table/CLI tests (hand-computable predictions)."""
from __future__ import annotations

import json
from pathlib import Path

from profiler.latency.fit import tiled_mflops
from profiler.ops import OpProbe
from profiler.spec import ConvSpec

A, B, TILE = 0.02, 0.05, 32  # ms per tiled MFLOP, ms, output-channel tile
OP_A, OP_B = 1e-5, 0.002  # ADD: ms per element, ms
CHANNELS = [(24, 20), (40, 33), (57, 64), (70, 48), (96, 100), (101, 17), (130, 90), (150, 40), (33, 130), (64, 64)]
DEVICE = {"name": "synthetic", "cpu": "test", "runtime": "none"}
SETTINGS = {"threads": 1, "runs": 10, "warmup": 2}


def true_ms(spec: ConvSpec) -> float:
    return A * tiled_mflops(spec, TILE, 1) + B


def _measurement(ms: float) -> dict:
    return {"median_ms": ms, "mean_ms": ms, "std_ms": 0.0, "min_ms": ms, "count": 10, "warmup": 2,
            "started_at": 0.0, "finished_at": 1.0, "extra": {}}


def conv_record(spec: ConvSpec, ms: float) -> dict:
    return {"v": 1, "kind": "conv", "id": spec.config_hash(), "spec": spec.to_dict(), "m": _measurement(ms),
            "device": "synthetic", "serial": None, "t": 0.0}


def op_record(op: str, elements: int, ms: float) -> dict:
    return probe_record(OpProbe(op, ((1, elements), (1, elements)), (1, elements)), ms)


def probe_record(probe: OpProbe, ms: float) -> dict:
    return {"v": 1, "kind": "op", "id": probe.config_hash(), "spec": probe.to_dict(), "units": probe.units[1],
            "m": _measurement(ms), "device": "synthetic", "serial": None, "t": 0.0}


def op_true_ms(units: int) -> float:
    return OP_A * units + OP_B


def conv_records_like(spec: ConvSpec) -> list[dict]:
    """Measurements of spec's condition at CHANNELS (depthwise: the cout column as channels)."""
    out = []
    for cout, cin in CHANNELS:
        varied = ConvSpec.depthwise(spec.h, spec.w, cout, spec.kernel, spec.stride, spec.activation) \
            if spec.conv_type == "depthwise" else spec.with_channels(cin, cout)
        out.append(conv_record(varied, true_ms(varied)))
    return out


def records(resolutions=(16, 8), activations=("relu",), depthwise: bool = True) -> list[dict]:
    out = []
    for hw in resolutions:
        for act in activations:
            for cout, cin in CHANNELS:
                spec = ConvSpec(hw, hw, cin, cout, 3, activation=act)
                out.append(conv_record(spec, true_ms(spec)))
            if depthwise:
                for c, _ in CHANNELS:
                    spec = ConvSpec.depthwise(hw, hw, c, 3, activation=act)
                    out.append(conv_record(spec, true_ms(spec)))
    out += [op_record("ADD", n, op_true_ms(n)) for n in (1000, 4000, 16000, 64000)]
    return out


def write_raw_log(path: Path, recs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def net_record(name: str, ops: list, ms: float) -> dict:
    """A calibration network's record (profiler.measure.sweep.make_record): its ops as profiler.model_ops dicts."""
    return {"v": 1, "kind": "net", "id": name, "spec": {"family": "vgg", "hw": 16, "layers": [], "stem": 0, "head": 0,
                                                        "classes": 10},
            "ops": [op.to_dict() for op in ops], "m": _measurement(ms), "device": "synthetic", "serial": None,
            "t": 0.0}
