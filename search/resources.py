"""The resource regularizer of Eq. 7-10: phi per operation for params, FLOPs and latency, and the gammas.

Every phi takes channel counts that may be soft tensors (gamma of Eq. 9-10) or plain numbers, so one function serves
the differentiable R(psi) and the exact resource of a hard-gated network. The formulas are profiler.cost's (the same
the profiler and export use); which ops a layer becomes is profiler.lowering's (the rules export builds by).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from profiler.cost import conv_activations, conv_flops, conv_params, conv_weights, in_network_ms
from profiler.errors import FgnasError
from profiler.lowering import SHARED, SPLIT, MergeOps, explicit_pad, pad_elements, pad_pixels, shareable
from profiler.ops import unit_of
from profiler.spec import ConvSpec
from search.gates import binarize

# conv_flops, conv_params: phi of params and FLOPs; the lowering rules: what search.network prices a layer as
__all__ = ["SHARED", "SPLIT", "Count", "FlopsResource", "LatencyResource", "MergeOps", "ParamsResource", "RESOURCES",
           "Resource", "active_channels", "conv_flops", "conv_params", "create_resource", "explicit_pad", "gamma_in",
           "gamma_out", "layer_assembly", "overlap_surrogate", "pad_elements", "pad_pixels", "register_resource",
           "shareable"]

Count = Tensor | float


def gamma_out(gates: Tensor) -> Tensor:
    """Eq. 9: the number of output channels of each operation, ||G(psi_l,i)||_1. gates: [M, C] -> [M]."""
    return gates.sum(dim=-1)


def active_channels(gates: Tensor, skip_mask: Tensor | None = None) -> Tensor:
    """The binary mask of a layer's alive output channels: h(sum_i G_i [+ skip mask]) of Eq. 10. [M, C] -> [C]."""
    total = gates.sum(dim=0)
    if skip_mask is not None:
        total = total + skip_mask
    return binarize(total)


def gamma_in(prev_gates: Tensor, skip_mask: Tensor | None = None) -> Tensor:
    """Eq. 10 with the skip term: the number of input channels a layer reads from its predecessor."""
    return active_channels(prev_gates, skip_mask).sum()


class Resource(ABC):
    """phi of Eq. 8 for every kind of op a SearchNetwork contains. Channel counts may be tensors."""

    name: str
    unit: str

    @classmethod
    def from_table(cls, table: Any) -> Resource:
        """Params and FLOPs are exact and need no table; latency overrides this."""
        return cls()

    @abstractmethod
    def conv(self, spec: ConvSpec, cin: Count, cout: Count) -> Count: ...

    @abstractmethod
    def linear(self, cin: Count, cout: int) -> Count: ...

    def add(self, h: int, w: int, channels: Count) -> Count:
        """A residual add over `channels` alive channels."""
        return 0.0

    def global_pool(self, h: int, w: int, channels: Count) -> Count:
        """Global average pooling over an h x w x channels input."""
        return 0.0

    def max_pool(self, h: int, w: int, channels: Count) -> Count:
        """A max pool over an h x w x channels input."""
        return 0.0

    def pad(self, pixels: int, elements: Count) -> Count:
        """Export's explicit PAD (see `explicit_pad`) writing `pixels` pixels of `elements` elements in all."""
        return 0.0

    def merge(self, h: int, w: int, ops: MergeOps) -> float:
        """The exact cost of assembling a layer's operations on an h x w output (export's SPLIT_V/ADD/CONCAT)."""
        return 0.0

    def merge_surrogate(self, h: int, w: int, gates: Tensor, ops: MergeOps) -> Count:
        """A differentiable stand-in for `merge` (its gradient is used, its value is not): the per-element cost of
        the overlap (sum_i G_i - h(sum_i G_i)). SPLIT_V and CONCATENATION cost per piece, a count with no gradient:
        they are in the hard resource the search stops on."""
        return 0.0

    def activation(self, op: str, h: int, w: int, channels: Count) -> Count:
        """A layer's post activation as an op of its own (`op`: profiler.lowering.post_activation_op) over an
        h x w x channels output."""
        return 0.0

    def multiply(self, h: int, w: int, channels: Count) -> Count:
        """An operation's h x w x channels output multiplied by its layer's 1/M (profiler.lowering.scales_output)."""
        return 0.0

    def base(self) -> float:
        """What the whole network costs once, beyond its ops (latency: one invoke of the model)."""
        return 0.0

    def select(self, h: int, w: int, channels: Count, contiguous: bool) -> Count:
        """A depthwise operation reading `channels` of its h x w input's channels: a slice where export can make them
        contiguous, else a gather (export/prune.py)."""
        return 0.0


RESOURCES: dict[str, type[Resource]] = {}


def register_resource(name: str) -> Callable[[type[Resource]], type[Resource]]:
    def add(cls: type[Resource]) -> type[Resource]:
        cls.name = name
        RESOURCES[name] = cls
        return cls
    return add


@register_resource("params")
class ParamsResource(Resource):
    unit = "params"

    def conv(self, spec: ConvSpec, cin: Count, cout: Count) -> Count:
        return conv_params(spec, cin, cout)

    def linear(self, cin: Count, cout: int) -> Count:
        return cin * cout + cout


@register_resource("flops")
class FlopsResource(Resource):
    unit = "FLOPs"

    def conv(self, spec: ConvSpec, cin: Count, cout: Count) -> Count:
        return conv_flops(spec, cin, cout)

    def linear(self, cin: Count, cout: int) -> Count:
        return 2 * cin * cout


@register_resource("latency")
class LatencyResource(Resource):
    """phi^latency from a latency table: each conv through its condition's differentiable fit; the non-conv ops
    (ADD, MEAN, FULLY_CONNECTED, MAX_POOL_2D) through the table's per-op models on their element / MAC counts.

    Every op's table price comes from a one-op model and so contains one invoke's overhead, which the network pays
    once (profiler.cost.whole_model_ms): each op here is its price less that overhead (never below zero),
    and `base` adds it back once. Inside a network an op also pays for its weights and big activations coming from
    slower caches (the table's NetworkModel, LatencyTable.network_ms): each op here adds that on the sizes
    profiler.model_ops counts (a conv's weights; every input and output)."""

    unit = "ms"

    @classmethod
    def from_table(cls, table: Any) -> Resource:
        return cls(table)

    def __init__(self, table: Any) -> None:
        if table is None:
            raise FgnasError("a latency target needs a latency table: pass --latency-table device_tables/<device>.json "
                             "(make one with fgnas-profile)")
        self.table = table
        self.overhead = table.invoke_overhead_ms

    def _in_network(self, price: Count) -> Count:
        """An op's price inside a network: less the invoke overhead, never below zero; the gradient is kept."""
        if isinstance(price, Tensor):
            return price - price.detach().clamp(max=self.overhead)
        return price - min(price, self.overhead)

    def base(self) -> float:
        return self.overhead

    def _network(self, weights: Count, activations: Count) -> Count:
        """What an op with these float32 weight and activation counts (values) costs more inside a network
        (profiler.cost.in_network_ms with the table's NetworkModel; 0 without one)."""
        return 0.0 if self.table.network is None else in_network_ms(self.table.network, weights, activations)

    def conv(self, spec: ConvSpec, cin: Count, cout: Count) -> Count:
        network = self._network(conv_weights(spec, cin, cout), conv_activations(spec, cin, cout))
        if isinstance(cin, Tensor) or isinstance(cout, Tensor):
            return self._in_network(self.table.latency_torch(spec, cin, cout)) + network
        return self._in_network(self.table.latency_torch(spec, torch.tensor(float(cin)),
                                                         torch.tensor(float(cout))).item()) + network

    def linear(self, cin: Count, cout: int) -> Count:
        return (self._in_network(self.table.predict_op_ms("FULLY_CONNECTED", cin * cout))
                + self._network(0.0, cin + cin * cout + cout + cout))

    def add(self, h: int, w: int, channels: Count) -> Count:
        return self._in_network(self.table.predict_op_ms("ADD", h * w * channels)) + self._network(0.0, 3 * h * w *
                                                                                                     channels)

    def global_pool(self, h: int, w: int, channels: Count) -> Count:
        return (self._in_network(self.table.predict_op_ms("MEAN", h * w * channels))
                + self._network(0.0, h * w * channels + channels))

    def max_pool(self, h: int, w: int, channels: Count) -> Count:
        return (self._in_network(self.table.predict_op_ms("MAX_POOL_2D", h * w * channels))
                + self._network(0.0, h * w * channels + math.ceil(h / 2) * math.ceil(w / 2) * channels))

    def _op(self, name: str, units: Count, elements: Count = 0.0, activations: Count = 0.0) -> Count:
        # published phone tables lack SPLIT_V/CONCATENATION models, and none has PRELU or TANH on their own: those
        # ops are left out (see unpriced_merge_ops)
        if not self._prices(name):
            return 0.0
        return self._in_network(self.table.predict_op_ms(name, units, elements)) + self._network(0.0, activations)

    def _prices(self, name: str) -> bool:
        return name in self.table.ops and self.table.ops[name].unit == unit_of(name)

    @property
    def unpriced_merge_ops(self) -> list[str]:
        return [name for name in ("ADD", "SPLIT_V", "CONCATENATION") if not self._prices(name)]

    # The copy ops' activations below count what they move twice (read and written): the input a slice or gather
    # reads from is wider, but the search does not know by how much.
    def pad(self, pixels: int, elements: Count) -> Count:
        return self._op("PAD", pixels, elements, 2 * elements)

    def activation(self, op: str, h: int, w: int, channels: Count) -> Count:
        return self._op(op, h * w * channels, 0.0, 2 * h * w * channels)

    def multiply(self, h: int, w: int, channels: Count) -> Count:
        return self._op("MUL", h * w * channels, 0.0, 2 * h * w * channels)

    def select(self, h: int, w: int, channels: Count, contiguous: bool) -> Count:
        if contiguous:
            return self._op("STRIDED_SLICE", h * w, h * w * channels, 2 * h * w * channels)
        return self._op("GATHER", h * w * channels, 0.0, 2 * h * w * channels)

    def merge(self, h: int, w: int, ops: MergeOps) -> float:
        hw = h * w
        splits = zip(ops.split_pieces, ops.split_channels)
        return (sum(self._op("ADD", c * hw, 0.0, 3 * c * hw) for c in ops.add_channels)
                + sum(self._op("SPLIT_V", n * hw, c * hw, 2 * c * hw) for n, c in splits)
                + (self._op("CONCATENATION", ops.concat_pieces * hw, ops.concat_channels * hw,
                            2 * ops.concat_channels * hw) if ops.concat_pieces else 0.0))

    def merge_surrogate(self, h: int, w: int, gates: Tensor, ops: MergeOps) -> Count:
        return self._op("ADD", overlap_surrogate(gates) * h * w) if ops.add_channels else 0.0


def overlap_surrogate(gates: Tensor) -> Tensor:
    """sum_i G_i - h(sum_i G_i) with a useful gradient: h's identity backward would cancel the first term, so each
    gate is weighted instead by whether another operation already keeps its channel (d/dG_i,c = 1 exactly then)."""
    others = ((gates.sum(dim=0, keepdim=True) - gates).detach() > 0).to(gates.dtype)
    weighted = (gates * others).sum()
    return (gates.sum() - active_channels(gates).sum()).detach() + weighted - weighted.detach()


def layer_assembly(resource: Resource, specs: list[ConvSpec | None], cin: Count, gates: Tensor, h: int, w: int,
                   can_share: bool, split: MergeOps) -> tuple[str, Count]:
    """How export assembles a layer of several producers, and what that costs beyond each operation's own conv:
    SPLIT computes each operation on its own channels and reassembles them run by run (`split`: the runs
    profiler.channel_order gives the layer); SHARED, where the layer has no skip or depthwise operation, lets every
    operation compute all the layer's alive channels (zeros where it keeps none) and adds them at full width, trading
    conv work for no SPLIT_V/CONCATENATION. The cheaper one wins (SPLIT on a tie, and always for params/FLOPs, which
    price no assembly). specs: each producer's ConvSpec (channel counts unused), None for an operation that keeps
    nothing and for the skip; gates: each producer's channel gates (their overlap is the gradient's surrogate);
    h, w: the conv output's size."""
    surrogate = torch.as_tensor(resource.merge_surrogate(h, w, gates, split))
    split_cost = resource.merge(h, w, split) + (surrogate - surrogate.detach())
    present = [i for i, spec in enumerate(specs) if spec is not None]
    if not can_share or len(present) < 2 or not (split.split_pieces or split.concat_pieces):
        return SPLIT, split_cost
    alive = active_channels(gates).sum()
    couts = gamma_out(gates)
    shared = sum(torch.as_tensor(resource.conv(specs[i], cin, alive))
                 - torch.as_tensor(resource.conv(specs[i], cin, couts[i])) for i in present) \
        + (len(present) - 1) * torch.as_tensor(resource.add(h, w, alive))
    cheaper = float(torch.as_tensor(shared).detach()) < float(torch.as_tensor(split_cost).detach())
    return (SHARED, shared) if cheaper else (SPLIT, split_cost)


def create_resource(name: str, table: Any = None) -> Resource:
    """`params`, `flops` or `latency` (which needs a LatencyTable)."""
    try:
        cls = RESOURCES[name]
    except KeyError:
        raise FgnasError(f"unknown resource {name!r}: use one of {', '.join(RESOURCES)}") from None
    return cls.from_table(table)
