"""Non-conv ops that networks contain (residual ADD, global pooling, the classifier head, ...) and their size units.

The table prices each such op with `latency = a * units + b`. What a "unit" is depends on where the op's work lies:
output elements for elementwise ops, reshapes, concatenation, padding and softmax; input elements for pooling and
MEAN (they read the whole input but write little); multiply-accumulates for FULLY_CONNECTED. `op_units` computes
them from tensor shapes alone, so the sweep (which knows its probes) and the TFLite reader (which reads shapes from a
model file) count the same way.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass

from profiler.errors import FgnasError

Shape = tuple[int, ...]

UNIT_OUTPUT_ELEMENTS = "output_elements"
UNIT_INPUT_ELEMENTS = "input_elements"
UNIT_MACS = "macs"
# memcpy calls: SPLIT_V, CONCATENATION and a channel STRIDED_SLICE copy each pixel's channels piece by piece, so on a
# CPU their time follows pixels x pieces far more than elements (measured on host: a 32x32 split costs the same
# 9 us at 8 and at 64 channels; an 8x8 one 1.4 us at 8 and at 128)
UNIT_COPIES = "copies"


def _output_elements(inputs: list[Shape], outputs: list[Shape]) -> int:
    return math.prod(outputs[0])


def _input_elements(inputs: list[Shape], outputs: list[Shape]) -> int:
    return math.prod(inputs[0])


def _pixels(shape: Shape) -> int:
    return math.prod(shape[:-1])


def _split_copies(inputs: list[Shape], outputs: list[Shape]) -> int:
    return _pixels(inputs[0]) * len(outputs)


def _concat_copies(inputs: list[Shape], outputs: list[Shape]) -> int:
    return _pixels(outputs[0]) * len(inputs)


def _slice_copies(inputs: list[Shape], outputs: list[Shape]) -> int:
    return _pixels(outputs[0])


def _pad_copies(inputs: list[Shape], outputs: list[Shape]) -> int:
    return _pixels(outputs[0])  # one copy per output pixel (here 32x32x16 pads in 12.5 us, 32x32x64 in 13.4 us)


def _fc_macs(inputs: list[Shape], outputs: list[Shape]) -> int:
    # A .tflite FULLY_CONNECTED lists (input, weights [N, K], bias); our probes list only the input [1, K].
    k = inputs[1][-1] if len(inputs) > 1 else inputs[0][-1]
    return math.prod(outputs[0]) * k


# op name -> (unit name, units from (input shapes, output shapes))
_UNITS: dict[str, tuple[str, Callable[[list[Shape], list[Shape]], int]]] = {
    "ADD": (UNIT_OUTPUT_ELEMENTS, _output_elements),
    "MUL": (UNIT_OUTPUT_ELEMENTS, _output_elements),
    "LOGISTIC": (UNIT_OUTPUT_ELEMENTS, _output_elements),
    "HARD_SWISH": (UNIT_OUTPUT_ELEMENTS, _output_elements),
    # a clamp the converter could not fuse into the op before it (ResNet's relu after the residual ADD)
    "RELU": (UNIT_OUTPUT_ELEMENTS, _output_elements),
    "RELU6": (UNIT_OUTPUT_ELEMENTS, _output_elements),
    "RESHAPE": (UNIT_OUTPUT_ELEMENTS, _output_elements),
    "SOFTMAX": (UNIT_OUTPUT_ELEMENTS, _output_elements),
    "CONCATENATION": (UNIT_COPIES, _concat_copies),
    "PAD": (UNIT_COPIES, _pad_copies),
    "MEAN": (UNIT_INPUT_ELEMENTS, _input_elements),
    "AVERAGE_POOL_2D": (UNIT_INPUT_ELEMENTS, _input_elements),
    "MAX_POOL_2D": (UNIT_INPUT_ELEMENTS, _input_elements),
    "FULLY_CONNECTED": (UNIT_MACS, _fc_macs),
    # how an exported mixed-operation layer takes apart and reassembles its channels (export/plan.py)
    "SPLIT_V": (UNIT_COPIES, _split_copies),
    "GATHER": (UNIT_OUTPUT_ELEMENTS, _output_elements),  # one element at a time: elements it is
    "STRIDED_SLICE": (UNIT_COPIES, _slice_copies),
}

PRICED_OPS: tuple[str, ...] = tuple(_UNITS)


def unit_of(op_name: str) -> str | None:
    """The unit this fgnas counts `op_name` in (None for an op it does not price)."""
    return _UNITS[op_name][0] if op_name in _UNITS else None


def op_elements(op_name: str, input_shapes: list[Shape], output_shapes: list[Shape]) -> int | None:
    """The elements a copy op (SPLIT_V, CONCATENATION, STRIDED_SLICE, PAD) writes, its model's second term: its time
    is a cost per copy (pixel and piece) plus a cost per element moved, and neither alone fits (cross-validated error
    here 25-39% on copies alone, 7-14% on both). None for every other op."""
    if op_name not in _UNITS or _UNITS[op_name][0] != UNIT_COPIES:
        return None
    return sum(math.prod(s) for s in output_shapes)


def op_units(op_name: str, input_shapes: list[Shape], output_shapes: list[Shape]) -> tuple[str, int]:
    """(unit name, units) of one non-conv op; FgnasError for an op the profiler does not measure."""
    if op_name not in _UNITS:
        raise FgnasError(f"op {op_name} cannot be priced: the profiler measures {', '.join(PRICED_OPS)} besides convs; "
                         f"add it to profiler/ops.py (units) and profiler/measure/model_builder.py (a probe), then "
                         f"re-profile")
    unit, count = _UNITS[op_name]
    return unit, int(count([tuple(s) for s in input_shapes], [tuple(s) for s in output_shapes]))


def _same_shape_binary(h: int, w: int, c: int) -> tuple[list[Shape], Shape]:
    return [(1, h, w, c), (1, h, w, c)], (1, h, w, c)


def _unary(h: int, w: int, c: int) -> tuple[list[Shape], Shape]:
    return [(1, h, w, c)], (1, h, w, c)


def _global_pool(h: int, w: int, c: int) -> tuple[list[Shape], Shape]:
    return [(1, h, w, c)], (1, 1, 1, c)


def _max_pool(h: int, w: int, c: int) -> tuple[list[Shape], Shape]:
    return [(1, h, w, c)], (1, math.ceil(h / 2), math.ceil(w / 2), c)


def _flatten(h: int, w: int, c: int) -> tuple[list[Shape], Shape]:
    return [(1, h, w, c)], (1, h * w * c)


def _concat_halves(h: int, w: int, c: int) -> tuple[list[Shape], Shape]:
    c = max(c, 2)
    return [(1, h, w, c // 2), (1, h, w, c - c // 2)], (1, h, w, c)


def _split_halves(h: int, w: int, c: int) -> tuple[list[Shape], Shape]:
    # SPLIT_V has several outputs: the probe records the first (the builder splits c into halves)
    c = max(c, 2)
    return [(1, h, w, c)], (1, h, w, c // 2)


def _three_quarters(h: int, w: int, c: int) -> tuple[list[Shape], Shape]:
    # the channels a depthwise operation reads out of its input, as a gather or a slice
    c = max(c, 2)
    return [(1, h, w, c)], (1, h, w, max(1, 3 * c // 4))


def _pad_one(h: int, w: int, c: int) -> tuple[list[Shape], Shape]:
    return [(1, h, w, c)], (1, h + 2, w + 2, c)


def _classifier(h: int, w: int, c: int) -> tuple[list[Shape], Shape]:
    # The head of a network: c features in, h * w classes out (spaces pass h=1, w=classes).
    return [(1, c)], (1, h * w)


def _class_scores(h: int, w: int, c: int) -> tuple[list[Shape], Shape]:
    return [(1, h * w * c)], (1, h * w * c)


# op name -> the probe shapes for a feature map of h x w x c, as such an op meets it in a network
_PROBE_SHAPES: dict[str, Callable[[int, int, int], tuple[list[Shape], Shape]]] = {
    "ADD": _same_shape_binary,
    "MUL": _same_shape_binary,
    "LOGISTIC": _unary,
    "HARD_SWISH": _unary,
    "RELU": _unary,
    "RELU6": _unary,
    "RESHAPE": _flatten,
    "SOFTMAX": _class_scores,
    "CONCATENATION": _concat_halves,
    "PAD": _pad_one,
    "MEAN": _global_pool,
    "AVERAGE_POOL_2D": _global_pool,
    "MAX_POOL_2D": _max_pool,
    "FULLY_CONNECTED": _classifier,
    "SPLIT_V": _split_halves,
    "GATHER": _three_quarters,
    "STRIDED_SLICE": _three_quarters,
}


@dataclass(frozen=True)
class OpProbe:
    """One non-conv op on float32 tensors of the given shapes (activations only; weights are the builder's job)."""

    op: str
    input_shapes: tuple[Shape, ...]
    output_shape: Shape

    def __post_init__(self) -> None:
        if self.op not in _PROBE_SHAPES:
            raise FgnasError(f"unknown op {self.op!r}: choose from {', '.join(PRICED_OPS)}")

    @classmethod
    def for_feature_map(cls, op: str, h: int, w: int, c: int) -> OpProbe:
        """The op as it meets an h x w x c feature map (FULLY_CONNECTED: c features in, h * w outputs)."""
        if op not in _PROBE_SHAPES:
            raise FgnasError(f"unknown op {op!r}: choose from {', '.join(PRICED_OPS)}")
        inputs, output = _PROBE_SHAPES[op](h, w, c)
        return cls(op, tuple(tuple(s) for s in inputs), tuple(output))

    @property
    def output_shapes(self) -> list[Shape]:
        """Every output of the probe's model: a SPLIT_V probe splits its input in two (the second piece is implied),
        the others have one."""
        if self.op == "SPLIT_V":
            whole = self.input_shapes[0]
            return [self.output_shape, (*whole[:-1], whole[-1] - self.output_shape[-1])]
        return [self.output_shape]

    @property
    def units(self) -> tuple[str, int]:
        return op_units(self.op, list(self.input_shapes), self.output_shapes)

    @property
    def elements(self) -> int | None:
        return op_elements(self.op, list(self.input_shapes), self.output_shapes)

    def to_dict(self) -> dict:
        return {"op": self.op, "input_shapes": [list(s) for s in self.input_shapes],
                "output_shape": list(self.output_shape)}

    @classmethod
    def from_dict(cls, d: dict) -> OpProbe:
        return cls(d["op"], tuple(tuple(s) for s in d["input_shapes"]), tuple(d["output_shape"]))

    def config_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def __str__(self) -> str:
        shapes = ",".join("x".join(map(str, s)) for s in self.input_shapes)
        return f"{self.op}({shapes})"


# The cheapest model there is: one ADD of two 1-element tensors. Its latency is the runtime's cost of one invoke (here
# ~0.5 us), which every single-op probe's latency contains once, but a whole model pays once for all its ops; see
# profiler.latency.table (invoke_overhead_ms) and profiler.latency.tflite_reader.ModelPrediction.
INVOKE_PROBE = OpProbe.for_feature_map("ADD", 1, 1, 1)
