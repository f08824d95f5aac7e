"""What a conv and a model's ops cost, each formula written once: MACs, FLOPs, params, weight and activation sizes,
tile rounding, the weight knee, a condition's latency line, the in-network cost and a whole model's latency.

The profiler's fit and LatencyTable, the search's resources (search/resources.py), the TFLite reader and export's
report all compute through these functions, so a formula cannot drift between who measures, who searches and who
exports.

Every function takes channel counts that may be Python numbers, numpy arrays or torch tensors (the search's soft
counts, with gradients) and uses only arithmetic operators on them; the three things operators cannot say (a
logarithm, a lower bound, a choice) go through `log2`, `at_least` and `choose`, which dispatch on the value. So this
module imports no torch. Where a count is rounded, the rounding is an argument: `round_up` rounds exactly, and the
search passes `straight_through(round_up)`, which rounds in the forward pass and is the identity in the backward
pass (the gradient of a rounded count would be zero almost everywhere).

Order of operations: the search computes in float32, where (a * b) * c and a * (b * c) can differ in the last bit.
Each product here is written in the order the search has always computed it, so its resources stay the same to the
bit; in float64 (the table's predictions) any order agrees to ~1e-16.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # profiler.spec re-exports this module's conv costs, so it cannot be imported here at run time
    from profiler.spec import ConvSpec

FLOAT32_BYTES = 4

Count = Any  # int | float | numpy.ndarray | torch.Tensor: a channel count or a size computed from one
RoundUp = Callable[[Count, int], Count]
# (cout tile, cin tile, cout small tile, cin small tile); a small tile equal to its tile: no ladder
Tiles = tuple[int, int, int, int]
NO_TILES: Tiles = (1, 1, 1, 1)


# ---- the three non-operator functions, for every kind of value ----------------------------------------------------

def log2(x: Count) -> Count:
    return x.log2() if hasattr(x, "log2") else np.log2(x)  # a torch tensor has the method; numpy's ufunc does the rest


def at_least(x: Count, low: float) -> Count:
    """max(x, low) elementwise."""
    if hasattr(x, "clamp"):
        return x.clamp(min=low)
    return np.maximum(x, low) if isinstance(x, np.ndarray) else max(low, x)


def choose(condition: Count, if_true: Count, if_false: Count) -> Count:
    """`if_true` where `condition` holds, else `if_false`, elementwise; a gradient flows to the chosen one only."""
    if not hasattr(condition, "shape"):
        return if_true if condition else if_false
    # a mask times a value is exactly the value or zero, so this is torch.where / numpy.where without naming either
    return condition * if_true + (~condition) * if_false


def nearest_int(count: Count) -> int:
    """The whole number nearest a scalar count (a tensor's value, without its gradient)."""
    return round(float(count.detach() if hasattr(count, "detach") else count))


# ---- rounding to tiles -----------------------------------------------------------------------------------------

def round_up(channels: Count, step: int) -> Count:
    """The smallest multiple of `step` at or above `channels` (exact on integers)."""
    return -(-channels // step) * step


def straight_through(rounding: RoundUp = round_up) -> RoundUp:
    """`rounding` in the forward pass, the identity in the backward pass (for tensors that require a gradient)."""
    def rounded(channels: Count, step: int) -> Count:
        exact = channels.detach()
        return channels + (rounding(exact, step) - exact)
    return rounded


def effective_channels(channels: Count, tile: int, small_tile: int | None = None,
                       rounding: RoundUp = round_up) -> Count:
    """The channels a kernel computes: counts up to `tile` rounded up to `small_tile` (when given), others to `tile`.

    CPU kernels compute channels in fixed-width tiles, and some have a narrower micro-kernel for few channels."""
    if tile == 1:
        return channels
    large = rounding(channels, tile)
    if small_tile is None or small_tile == tile:
        return large
    return choose(channels <= tile, rounding(channels, small_tile), large)


# ---- one conv --------------------------------------------------------------------------------------------------

def inputs_per_group(spec: ConvSpec, cin: Count = None) -> Count:
    """The input channels one output channel reads: 1 for a depthwise conv, else cin / groups (cin: spec.cin)."""
    if spec.conv_type == "depthwise":
        return 1
    cin = spec.cin if cin is None else cin
    return cin // spec.groups if isinstance(cin, int) else cin / spec.groups


def _taps(spec: ConvSpec, inputs: Count) -> Count:
    """Weights per output channel: kernel x kernel per input channel it reads."""
    return spec.kernel * spec.kernel * inputs


def conv_macs(spec: ConvSpec, cin: Count = None, cout: Count = None, tiles: Tiles | None = None,
              rounding: RoundUp = round_up) -> Count:
    """Multiply-accumulates of `spec` with `cin` / `cout` channels (default: the spec's); with `tiles`, cout and the
    per-group input channels rounded as effective_channels does (a depthwise conv's single input channel is not)."""
    per_group = inputs_per_group(spec, cin)
    cout = spec.cout if cout is None else cout
    if tiles is not None:
        cout = effective_channels(cout, tiles[0], tiles[2], rounding)
        if spec.conv_type != "depthwise":
            per_group = effective_channels(per_group, tiles[1], tiles[3], rounding)
    ho, wo = spec.out_hw
    return ho * wo * cout * _taps(spec, per_group)


def conv_flops(spec: ConvSpec, cin: Count = None, cout: Count = None) -> Count:
    """2 x MACs: the FGNAS paper's convention (MobileNetV2 1.0 at 224 is "600M" FLOPs, ~300M MACs)."""
    return 2 * conv_macs(spec, cin, cout)


def conv_params(spec: ConvSpec, cin: Count = None, cout: Count = None) -> Count:
    """Weights, the folded BN's bias (one per output channel) and, for PReLU, one slope per output channel."""
    cout = spec.cout if cout is None else cout
    return cout * (_taps(spec, inputs_per_group(spec, cin)) + (2 if spec.activation == "prelu" else 1))


def conv_weights(spec: ConvSpec, cin: Count = None, cout: Count = None) -> Count:
    """The conv's weight values (no bias)."""
    return _taps(spec, inputs_per_group(spec, cin)) * (spec.cout if cout is None else cout)


def conv_activations(spec: ConvSpec, cin: Count = None, cout: Count = None) -> Count:
    """The activation values a conv reads and writes: its input and its output."""
    ho, wo = spec.out_hw
    cin = spec.cin if cin is None else cin
    return spec.h * spec.w * cin + ho * wo * (spec.cout if cout is None else cout)


def tensor_values(shapes: Sequence[Sequence[Count]]) -> Count:
    """The values of all these tensors together."""
    return sum(math.prod(shape) for shape in shapes)


def megabytes(values: Count) -> Count:
    """MB of this many float32 values."""
    return values * FLOAT32_BYTES / 1e6


# ---- a condition's latency line --------------------------------------------------------------------------------

@dataclass(frozen=True)
class WeightKnee:
    """Each FLOP of a conv with more than `mb` MB of weights costs `1 + step + slope * log2(weights / mb)` times as
    much: once a layer's weights no longer fit a cache level, the kernel streams them from a slower one."""

    mb: float
    slope: float
    step: float = 0.0

    def factor(self, weights_mb: Count) -> Count:
        """The factor for a weight size in MB (or many): 1 up to the knee."""
        ratio = weights_mb / self.mb
        return 1 + (ratio > 1) * (self.step + self.slope * log2(at_least(ratio, 1.0)))


NO_KNEE = WeightKnee(math.inf, 0.0)


def conv_mflops(spec: ConvSpec, cin: Count = None, cout: Count = None, tiles: Tiles | None = None,
                knee: WeightKnee | None = None, rounding: RoundUp = round_up) -> Count:
    """The MFLOPs a condition's slope multiplies: 2 x the tiled MACs, times the weight knee's factor (on the weights
    the conv really has, not rounded ones)."""
    macs = conv_macs(spec, cin, cout, tiles, rounding)
    if knee is not None and knee != NO_KNEE:
        macs = macs * knee.factor(megabytes(conv_weights(spec, cin, cout)))
    return 2 * macs / 1e6


def conv_latency_ms(slope: float, intercept: float, spec: ConvSpec, cin: Count = None, cout: Count = None,
                    tiles: Tiles | None = None, knee: WeightKnee | None = None,
                    rounding: RoundUp = round_up) -> Count:
    """A condition's fitted line: slope (ms per MFLOP) x conv_mflops + intercept (ms)."""
    return slope * conv_mflops(spec, cin, cout, tiles, knee, rounding) + intercept


# ---- ops inside a whole model ----------------------------------------------------------------------------------

def in_network_ms(model: Any, weights: Count, activations: Count) -> Count:
    """What one op costs inside a network beyond its single-op price, by a NetworkModel (profiler.latency.fit): its
    float32 weights (values) read cold, and its activations (values read and written) beyond the model's threshold
    (those leave the faster caches between ops)."""
    beyond = at_least(megabytes(activations) - model.activation_threshold_mb, 0.0)
    return model.weights_ms_per_mb * weights * FLOAT32_BYTES / 1e6 + model.activation_ms_per_mb * beyond


def whole_model_ms(op_ms: Sequence[float], invoke_overhead_ms: float) -> float:
    """A model's latency from its ops' single-op latencies: the invoke overhead that each contains is paid once.
    Never below the dearest op: an op is never predicted to take less than nothing."""
    if not op_ms:
        return 0.0
    return max(sum(op_ms) - (len(op_ms) - 1) * invoke_overhead_ms, max(op_ms))
