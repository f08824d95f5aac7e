"""A searchable layer (Fig. 2-3, Eq. 1-3, 6): M candidate operations on a shared input, per-op per-channel gates,
output (1/M) sum_i G_i * o_i(x), plus an optional identity connection, then an optional post-add activation and pool.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn

from profiler.spec import ConvSpec
from search.gates import init_psi, recorded_gate
from search.operations import ACTIVATION_LAYERS, Operation, OpSpec


@dataclass(frozen=True)
class Pool:
    kind: str = "max"
    kernel: int = 2
    stride: int = 2


@dataclass(frozen=True)
class LayerNode:
    """Where a searchable layer sits in the network graph and what it may become."""

    name: str
    input: str  # a previous layer's name or "input"
    in_hw: tuple[int, int]
    cin: int
    cout: int
    stride: int
    ops: tuple[OpSpec, ...]
    skip: str | None = None  # layer whose output is added (Eq. 3)
    post_activation: str = "none"
    pool: Pool | None = None

    @property
    def conv_hw(self) -> tuple[int, int]:
        return math.ceil(self.in_hw[0] / self.stride), math.ceil(self.in_hw[1] / self.stride)

    @cached_property
    def op_specs(self) -> tuple[ConvSpec, ...]:
        """Each candidate operation as the profiler describes it, at full width (built once: R(psi) runs per step)."""
        return tuple(op.conv_spec(*self.in_hw, self.cin, self.cout, self.stride) for op in self.ops)

    @property
    def out_hw(self) -> tuple[int, int]:
        h, w = self.conv_hw
        if self.pool is None:
            return h, w
        return (h - self.pool.kernel) // self.pool.stride + 1, (w - self.pool.kernel) // self.pool.stride + 1

    def to_dict(self) -> dict:
        return {"name": self.name, "input": self.input, "skip": self.skip, "in_hw": list(self.in_hw),
                "stride": self.stride, "cin": self.cin, "cout": self.cout, "post_activation": self.post_activation,
                "pool": None if self.pool is None else vars(self.pool).copy(), "scale": 1.0 / len(self.ops)}


def depthwise_flags(node: LayerNode) -> Tensor:
    """[M, 1]: 1 for the layer's depthwise operations (effective_gates ties their channels to their input's)."""
    return torch.tensor([[float(op.conv_type == "depthwise")] for op in node.ops])


class SearchableLayer(nn.Module):
    """Holds the operations and the gate parameters psi ([M, cout, 2]) of one layer; the network supplies gates."""

    def __init__(self, node: LayerNode) -> None:
        super().__init__()
        self.node = node
        self.ops = nn.ModuleList(Operation(op, node.cin, node.cout, node.stride) for op in node.ops)
        self.psi = nn.Parameter(init_psi(len(node.ops), node.cout))
        self.post = ACTIVATION_LAYERS[node.post_activation](node.cout)
        self.pool = nn.Identity() if node.pool is None else nn.MaxPool2d(node.pool.kernel, node.pool.stride)
        self.register_buffer("depthwise", depthwise_flags(node), persistent=False)
        self.has_depthwise = any(op.conv_type == "depthwise" for op in node.ops)
        # Per gate, the mean over this step's samples of (d loss_n / d g)^2 (the gate's Fisher information), filled
        # by the backward pass while `recording` (search mode) and read by the search (search/dynamics.py).
        self.recording = False
        self.register_buffer("fisher", torch.zeros(len(node.ops), node.cout), persistent=False)

    def effective_gates(self, gates: Tensor, in_mask: Tensor) -> Tensor:
        """A depthwise channel whose input channel is pruned would output a constant; it is pruned with its input
        so that the gated network equals its physically sliced version exactly."""
        if not self.has_depthwise:
            return gates
        return gates * (self.depthwise * in_mask + (1.0 - self.depthwise))

    def _sink(self, op: int):
        def record(per_sample: Tensor) -> None:
            # per_sample is d(batch-mean loss)/dg of each sample: N times it is d loss_n / dg
            n = per_sample.shape[0]
            self.fisher[op] += (n * per_sample.detach()).pow(2).mean(0).to(self.fisher.dtype)
        return record

    def forward(self, x: Tensor, gates: Tensor | None = None, skip: Tensor | None = None) -> Tensor:
        """gates: [M, cout] effective gates, or None for the ungated network (pretraining: every gate on)."""
        m = len(self.ops)
        if gates is None:
            y = self.ops[0](x)
            for op in self.ops[1:]:
                y = y + op(x)
        else:
            y = None
            for i, (op, g) in enumerate(zip(self.ops, gates)):
                if not self.recording and not bool(g.any()) and (y is not None or bool(gates[i + 1:].any())):
                    continue  # fixed gates all off: the operation adds nothing (fine-tune, evaluation)
                out = op(x)
                g = g.to(out.dtype)  # keep autocast's half precision
                gated = recorded_gate(out, g, self._sink(i)) if self.recording else out * g.view(1, -1, 1, 1)
                y = gated if y is None else y + gated
        if m > 1:
            y = y / m
        if skip is not None:
            y = y + skip
        return self.pool(self.post(y))
