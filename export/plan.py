"""The physically pruned network as plain data: folded conv weights, channel orders, splits, adds and concats.

Both emitters (export/torch_model.py for PyTorch and ONNX, export/tflite.py for TensorFlow Lite) interpret this one
plan, so the two exported graphs cannot drift apart. The plan itself is made by export/prune.py, in the channel
orders and runs of profiler/channel_order.py.

A layer computes each kept operation as one conv on exactly the output channels it owns. Its output channels are
grouped into *runs*: contiguous channels that share the same producers (a set of operations, plus the skip input).
An operation's conv emits its channels run after run, so its output is split (SPLIT_V) into the runs it feeds, each
run is the sum of its producers' pieces, and the runs are concatenated: no gather, and no split at all when an
operation feeds a single run (the common case).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from profiler.channel_order import SKIP, Selection
from profiler.lowering import activation_per_run
from search.arch import Pool

__all__ = ["SKIP", "Piece", "PrunedConv", "PrunedHead", "PrunedLayer", "PrunedPlan", "Selection"]


@dataclass(frozen=True, eq=False)
class PrunedConv:
    """One kept operation, BN and scales folded. weight: OIHW for a normal conv, (C, 1, k, k) for a depthwise one."""

    weight: np.ndarray
    bias: np.ndarray
    kernel: int
    stride: int
    depthwise: bool
    activation: str
    slope: np.ndarray | None  # PReLU slopes
    out_scale: float  # 1/M applied after the activation where it cannot be folded into the weights (tanh, relu6)
    select: Selection
    splits: tuple[int, ...]  # sizes of the runs this conv's output feeds, in output order

    @property
    def cin(self) -> int:
        return int(self.weight.shape[0] if self.depthwise else self.weight.shape[1])

    @property
    def cout(self) -> int:
        return int(self.weight.shape[0])


@dataclass(frozen=True)
class Piece:
    """A piece of a run: piece `part` of operation `op`'s split output, or (op = -1) of the skip input's split."""

    op: int
    part: int


@dataclass(frozen=True, eq=False)
class PrunedLayer:
    name: str
    input: str
    skip: str | None
    in_hw: tuple[int, int]
    stride: int
    ops: tuple[PrunedConv, ...]
    skip_splits: tuple[int, ...]  # sizes of the runs the skip input feeds, in the skip tensor's channel order
    runs: tuple[tuple[Piece, ...], ...]  # the layer's output, run after run; each run sums its pieces
    post_activation: str
    post_slope: np.ndarray | None
    pool: Pool | None  # max pooling (the layer's arch.json pool)
    order: tuple[int, ...]  # original channel index of each output channel

    @property
    def out_channels(self) -> int:
        return len(self.order)

    @property
    def conv_hw(self) -> tuple[int, int]:
        return -(-self.in_hw[0] // self.stride), -(-self.in_hw[1] // self.stride)

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.pool.out_hw(*self.conv_hw) if self.pool else self.conv_hw

    @property
    def activation_per_run(self) -> bool:
        """The post activation applied to each run before the concat (profiler.lowering.activation_per_run)."""
        return activation_per_run(self.post_activation, map(len, self.runs))

    @property
    def run_sizes(self) -> tuple[int, ...]:
        return tuple(self._piece_size(run[0]) for run in self.runs)

    def _piece_size(self, piece: Piece) -> int:
        splits = self.skip_splits if piece.op == SKIP else self.ops[piece.op].splits
        return splits[piece.part]


@dataclass(frozen=True, eq=False)
class PrunedHead:
    input: str
    weight: np.ndarray  # (classes, features), in the input tensor's channel order, pending scale folded
    bias: np.ndarray


@dataclass(frozen=True, eq=False)
class PrunedPlan:
    in_channels: int
    height: int
    width: int
    layers: tuple[PrunedLayer, ...]
    head: PrunedHead

    @property
    def num_classes(self) -> int:
        return int(self.head.weight.shape[0])

    def shape(self, tensor: str) -> tuple[int, int, int]:
        """(h, w, channels) of the network input or of a layer's output."""
        if tensor == "input":
            return self.height, self.width, self.in_channels
        layer = next(layer for layer in self.layers if layer.name == tensor)
        return (*layer.out_hw, layer.out_channels)

    def gathers(self) -> list[str]:
        """Layers whose depthwise input had to be gathered (no channel order made it contiguous)."""
        return [layer.name for layer in self.layers for op in layer.ops if op.select.kind == "gather"]
