"""The ops of a model as plain data (what profiler.latency.tflite_reader reads from a .tflite file), and the sizes that
decide what an op costs inside a network beyond its single-op price (profiler.latency.fit.NetworkModel): a conv's
weights and the activations an op reads and writes (counted by profiler.cost)."""
from __future__ import annotations

from dataclasses import dataclass

from profiler.cost import FLOAT32_BYTES, conv_activations, conv_weights, megabytes, tensor_values, whole_model_ms
from profiler.spec import ConvSpec

__all__ = ["FLOAT32_BYTES", "ConvOp", "ModelOp", "OtherOp", "op_from_dict", "whole_model_ms"]


@dataclass(frozen=True)
class ConvOp:
    """A conv read from a model; `ops` names the TFLite ops it covers (e.g. ("CONV_2D", "PRELU"))."""

    index: int
    ops: tuple[str, ...]
    spec: ConvSpec

    @property
    def weights(self) -> int:
        return conv_weights(self.spec)

    @property
    def activations(self) -> int:
        return conv_activations(self.spec)

    @property
    def weights_mb(self) -> float:
        return megabytes(self.weights)

    @property
    def activation_mb(self) -> float:
        return megabytes(self.activations)

    def to_dict(self) -> dict:
        return {"index": self.index, "ops": list(self.ops), "spec": self.spec.to_dict()}


@dataclass(frozen=True)
class OtherOp:
    index: int
    op: str
    input_shapes: tuple[tuple[int, ...], ...]
    output_shapes: tuple[tuple[int, ...], ...]

    weights = 0  # FULLY_CONNECTED's weights are a classifier's: too small to matter here
    weights_mb = 0.0

    @property
    def activations(self) -> int:
        """Every input and output (shape, axis and padding operands are a few numbers; a classifier's weights
        small)."""
        return tensor_values((*self.input_shapes, *self.output_shapes))

    @property
    def activation_mb(self) -> float:
        return megabytes(self.activations)

    def to_dict(self) -> dict:
        return {"index": self.index, "op": self.op, "input_shapes": [list(s) for s in self.input_shapes],
                "output_shapes": [list(s) for s in self.output_shapes]}


ModelOp = ConvOp | OtherOp


def op_from_dict(d: dict) -> ModelOp:
    if "spec" in d:
        return ConvOp(d["index"], tuple(d["ops"]), ConvSpec.from_dict(d["spec"]))
    return OtherOp(d["index"], d["op"], tuple(tuple(s) for s in d["input_shapes"]),
                   tuple(tuple(s) for s in d["output_shapes"]))

