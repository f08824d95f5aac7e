"""The ops of a model as plain data (what profiler.tflite_reader reads from a .tflite file), and the sizes that
decide what an op costs inside a network beyond its single-op price (profiler.fit.NetworkModel): the MB of a conv's
weights and of the activations an op reads and writes."""
from __future__ import annotations

import math
from dataclasses import dataclass

from profiler.spec import ConvSpec

FLOAT32_BYTES = 4


@dataclass(frozen=True)
class ConvOp:
    """A conv read from a model; `ops` names the TFLite ops it covers (e.g. ("CONV_2D", "PRELU"))."""

    index: int
    ops: tuple[str, ...]
    spec: ConvSpec

    @property
    def weights_mb(self) -> float:
        return conv_weights_mb(self.spec)

    @property
    def activation_mb(self) -> float:
        s = self.spec
        ho, wo = s.out_hw
        return (s.h * s.w * s.cin + ho * wo * s.cout) * FLOAT32_BYTES / 1e6

    def to_dict(self) -> dict:
        return {"index": self.index, "ops": list(self.ops), "spec": self.spec.to_dict()}


@dataclass(frozen=True)
class OtherOp:
    index: int
    op: str
    input_shapes: tuple[tuple[int, ...], ...]
    output_shapes: tuple[tuple[int, ...], ...]

    weights_mb = 0.0  # FULLY_CONNECTED's weights are a classifier's: too small to matter here

    @property
    def activation_mb(self) -> float:
        """Every input and output (shape, axis and padding operands are a few numbers; a classifier's weights
        small)."""
        return sum(math.prod(s) for s in (*self.input_shapes, *self.output_shapes)) * FLOAT32_BYTES / 1e6

    def to_dict(self) -> dict:
        return {"index": self.index, "op": self.op, "input_shapes": [list(s) for s in self.input_shapes],
                "output_shapes": [list(s) for s in self.output_shapes]}


ModelOp = ConvOp | OtherOp


def op_from_dict(d: dict) -> ModelOp:
    if "spec" in d:
        return ConvOp(d["index"], tuple(d["ops"]), ConvSpec.from_dict(d["spec"]))
    return OtherOp(d["index"], d["op"], tuple(tuple(s) for s in d["input_shapes"]),
                   tuple(tuple(s) for s in d["output_shapes"]))


def conv_weights_mb(spec: ConvSpec) -> float:
    """The conv's float32 weights in MB."""
    return spec.kernel * spec.kernel * (spec.cin // spec.groups) * spec.cout * FLOAT32_BYTES / 1e6


def whole_model_ms(op_ms: list[float], invoke_overhead_ms: float) -> float:
    """A model's latency from its ops' single-op latencies: the invoke overhead that each contains is paid once.
    Never below the dearest op: an op is never predicted to take less than nothing."""
    if not op_ms:
        return 0.0
    return max(sum(op_ms) - (len(op_ms) - 1) * invoke_overhead_ms, max(op_ms))
