"""Decompose a published lookup-table entry (a whole MBConv block, a stem conv, a head) into our per-condition ops.

An MBConv block runs, in TFLite, as: 1x1 expand conv at H (absent when the block has no expansion), kxk depthwise
conv at H with stride s, optional squeeze-excite on the depthwise output, 1x1 project conv at H/s (no activation),
and a residual ADD when the block has an identity skip. ReLU/ReLU6 are fused into the convs by the converter;
h-swish is not (TFLite runs it as its own HARD_SWISH op), so an h-swish block's convs carry activation "none" and
the h-swish becomes HARD_SWISH ops on the expand and depthwise outputs.

Squeeze-excite is MEAN over the depthwise output, 1x1 reduce conv (ReLU) and 1x1 expand conv on a 1x1 map, and a
MUL that rescales the depthwise output. Its hard-sigmoid acts on a 1x1xmid vector (a few hundred elements) and is
left to the intercepts rather than given a parameter the data could never separate.
"""
from __future__ import annotations

from dataclasses import dataclass

from profiler.ops import op_units
from profiler.spec import ConvSpec


@dataclass(frozen=True)
class OpUse:
    """One non-conv op with its size, counted as profiler.ops counts it (so the table's op models mean the same)."""

    op: str
    unit: str
    units: int


def elementwise(op: str, h: int, w: int, c: int) -> OpUse:
    """ADD, MUL, HARD_SWISH: same-shape input and output."""
    unit, units = op_units(op, [(1, h, w, c)], [(1, h, w, c)])
    return OpUse(op, unit, units)


def global_mean(h: int, w: int, c: int) -> OpUse:
    unit, units = op_units("MEAN", [(1, h, w, c)], [(1, 1, 1, c)])
    return OpUse("MEAN", unit, units)


def fully_connected(cin: int, cout: int) -> OpUse:
    unit, units = op_units("FULLY_CONNECTED", [(1, cin)], [(1, cout)])
    return OpUse("FULLY_CONNECTED", unit, units)


@dataclass(frozen=True)
class LutEntry:
    """One published lookup-table entry and the ops it decomposes into.

    `role` is "block" for MBConv blocks (the entries the leave-one-out error is reported on) and names the network
    part otherwise ("stem", "last_conv", "head_conv", "pool", "logits"). `resolution` is the network's input size
    that the entry was measured in (the OFA tables hold 17 of them).
    """

    key: str
    role: str
    resolution: int
    mean_ms: float
    std_ms: float
    count: int
    convs: tuple[ConvSpec, ...]
    ops: tuple[OpUse, ...] = ()


@dataclass(frozen=True)
class MBConv:
    h: int
    w: int
    cin: int
    cout: int
    mid: int  # absolute middle channels; equal to cin (and no expand conv) for expand ratio 1
    kernel: int
    stride: int
    idskip: bool
    se: bool = False
    hswish: bool = False
    activation: str = "relu6"  # the fused activation of expand and depthwise when the block has no h-swish
    has_expand: bool = True


def make_divisible(value: float, divisor: int = 8) -> int:
    """Channel rounding used by MobileNetV3/once-for-all: nearest multiple of `divisor`, never below 90% of value."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def se_channels(mid: int) -> int:
    """Squeeze channels of once-for-all's SE module (reduction 4, divisible by 8)."""
    return make_divisible(mid / 4, 8)


def decompose_mbconv(block: MBConv) -> tuple[tuple[ConvSpec, ...], tuple[OpUse, ...]]:
    """The convs and non-conv ops an MBConv block runs as, in execution order."""
    act = "none" if block.hswish else block.activation
    ho, wo = -(-block.h // block.stride), -(-block.w // block.stride)
    convs: list[ConvSpec] = []
    ops: list[OpUse] = []
    if block.has_expand:
        convs.append(ConvSpec(block.h, block.w, block.cin, block.mid, 1, 1, 1, act))
        if block.hswish:
            ops.append(elementwise("HARD_SWISH", block.h, block.w, block.mid))
    convs.append(ConvSpec.depthwise(block.h, block.w, block.mid, block.kernel, block.stride, act))
    if block.hswish:
        ops.append(elementwise("HARD_SWISH", ho, wo, block.mid))
    if block.se:
        squeeze = se_channels(block.mid)
        ops.append(global_mean(ho, wo, block.mid))
        convs.append(ConvSpec(1, 1, block.mid, squeeze, 1, 1, 1, "relu"))
        convs.append(ConvSpec(1, 1, squeeze, block.mid, 1, 1, 1, "none"))
        ops.append(elementwise("MUL", ho, wo, block.mid))
    convs.append(ConvSpec(ho, wo, block.mid, block.cout, 1, 1, 1, "none"))
    if block.idskip:
        ops.append(elementwise("ADD", ho, wo, block.cout))
    return tuple(convs), tuple(ops)
