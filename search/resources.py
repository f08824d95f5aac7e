"""The resource regularizer of Eq. 7-10: phi per operation for params, FLOPs and latency, and the gammas.

Every phi takes channel counts that may be soft tensors (gamma of Eq. 9-10) or plain numbers, so one function serves
the differentiable R(psi) and the exact resource of a hard-gated network. The integer values equal
`profiler.spec.params/flops` (BN folded into the conv: one bias per output channel).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from profiler.errors import FgnasError
from profiler.model_ops import FLOAT32_BYTES
from profiler.ops import unit_of
from profiler.spec import ConvSpec
from search.gates import binarize

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


def conv_params(spec: ConvSpec, cin: Count, cout: Count) -> Count:
    """Weights + folded-BN bias (+ PReLU slopes) of `spec` with cin/cout channels (depthwise: cout only)."""
    per_out = spec.kernel * spec.kernel * (1 if spec.conv_type == "depthwise" else cin / spec.groups)
    extra = 2 if spec.activation == "prelu" else 1
    return cout * (per_out + extra)


def conv_flops(spec: ConvSpec, cin: Count, cout: Count) -> Count:
    """2 x MACs of `spec` with cin/cout channels (depthwise: cout only)."""
    ho, wo = spec.out_hw
    per_out = spec.kernel * spec.kernel * (1 if spec.conv_type == "depthwise" else cin / spec.groups)
    return 2 * ho * wo * cout * per_out


@dataclass(frozen=True)
class MergeOps:
    """The ops export (export/plan.py) needs to assemble a layer whose operations keep overlapping or several
    disjoint channel sets: channels are grouped by the set of operations keeping them; an operation feeding several
    groups is split (SPLIT_V), a group kept by k operations sums them (k - 1 ADDs), the groups are concatenated.
    ADDs are sized in channels (times the conv output's H x W: elements), SPLIT_V and CONCATENATION in pieces
    (times H x W: the copies profiler.ops counts them in) and in channels (times H x W: the elements they move)."""

    add_channels: tuple[int, ...] = ()  # one entry per ADD op
    split_pieces: tuple[int, ...] = ()  # one entry per SPLIT_V op: the groups its operation feeds
    concat_pieces: int = 0  # groups concatenated; 0: no CONCATENATION
    split_channels: tuple[int, ...] = ()  # one entry per SPLIT_V op: the channels it splits
    concat_channels: int = 0  # channels concatenated

    @property
    def overlap(self) -> int:
        """Channels computed more than once: sum_i ||G_i||_1 - ||h(sum_i G_i)||_1."""
        return sum(self.add_channels)


def merge_ops(keeps: Tensor) -> MergeOps:
    """MergeOps of one layer from its hard per-operation channel masks [M, C] (a channel's skip input, which export
    adds to whatever the operations produce, is not counted here)."""
    owned = keeps.detach().cpu() > 0
    groups: dict[tuple[bool, ...], int] = {}
    for owners in map(tuple, owned.t().tolist()):
        if any(owners):
            groups[owners] = groups.get(owners, 0) + 1
    if not groups:
        return MergeOps()
    adds = tuple(n for owners, n in groups.items() for _ in range(sum(owners) - 1))
    feeds = [sum(owners[i] for owners in groups) for i in range(owned.shape[0])]
    fed = [sum(n for owners, n in groups.items() if owners[i]) for i in range(owned.shape[0])]
    several = len(groups) > 1
    return MergeOps(adds, tuple(n for n in feeds if n > 1), len(groups) if several else 0,
                    tuple(c for n, c in zip(feeds, fed) if n > 1), sum(groups.values()) if several else 0)


def explicit_pad(kernel: int, stride: int, h: int, w: int) -> bool:
    """Whether export writes this conv as PAD + VALID conv: PyTorch pads kernel // 2 on both sides, TF's SAME one
    less in front when a stride-2 conv meets an even size."""
    return stride == 2 and kernel > 1 and (h % 2 == 0 or w % 2 == 0)


def pad_pixels(spec: ConvSpec) -> int:
    """The pixels of export's explicit PAD before `spec` (its copies, profiler.ops), 0 when there is none."""
    if not explicit_pad(spec.kernel, spec.stride, spec.h, spec.w):
        return 0
    p = spec.kernel // 2
    return (spec.h + 2 * p) * (spec.w + 2 * p)


def pad_elements(spec: ConvSpec, channels: Count) -> Count:
    """Output elements of export's explicit PAD in front of `spec` reading `channels` channels (0 when none)."""
    return pad_pixels(spec) * channels


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
    once (profiler.tflite_reader.whole_model_ms): each op here is its price less that overhead (never below zero),
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
        """NetworkModel.extra_ms for an op with these float32 weight and activation counts (in values)."""
        model = self.table.network
        if model is None:
            return 0.0
        beyond = activations * FLOAT32_BYTES / 1e6 - model.activation_threshold_mb
        beyond = beyond.clamp(min=0.0) if isinstance(beyond, Tensor) else max(0.0, beyond)
        return model.weights_ms_per_mb * weights * FLOAT32_BYTES / 1e6 + model.activation_ms_per_mb * beyond

    def conv(self, spec: ConvSpec, cin: Count, cout: Count) -> Count:
        ho, wo = spec.out_hw
        network = self._network(spec.kernel * spec.kernel * cin / spec.groups * cout if spec.conv_type != "depthwise"
                                else spec.kernel * spec.kernel * cout, spec.h * spec.w * cin + ho * wo * cout)
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
        # published phone tables lack SPLIT_V/CONCATENATION models: those merge ops are left out (see unpriced)
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

    def select(self, h: int, w: int, channels: Count, contiguous: bool) -> Count:
        if contiguous:
            return self._op("STRIDED_SLICE", h * w, h * w * channels, 2 * h * w * channels)
        return self._op("GATHER", h * w * channels, 0.0, 2 * h * w * channels)

    def merge(self, h: int, w: int, ops: MergeOps) -> float:
        hw = h * w
        splits = zip(ops.split_pieces, ops.split_channels or (0,) * len(ops.split_pieces))
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


SPLIT, SHARED = "split", "shared"


def layer_assembly(resource: Resource, specs: list[ConvSpec | None], cin: Count, gates: Tensor, h: int, w: int,
                   can_share: bool) -> tuple[str, Count]:
    """How export assembles a layer of several operations, and what that costs beyond each operation's own conv:
    SPLIT computes each operation on its own channels and reassembles them (`merge`); SHARED, where the layer has
    no skip or depthwise operation, lets every operation compute all the layer's alive channels (zeros where it
    keeps none) and adds them at full width, trading conv work for no SPLIT_V/CONCATENATION. The cheaper one wins
    (SPLIT on a tie, and always for params/FLOPs, which price no assembly). specs: each operation's ConvSpec
    (channel counts unused), None for an operation that keeps nothing; h, w: the conv output's size."""
    ops = merge_ops(gates)
    surrogate = torch.as_tensor(resource.merge_surrogate(h, w, gates, ops))
    split = resource.merge(h, w, ops) + (surrogate - surrogate.detach())
    present = [i for i, spec in enumerate(specs) if spec is not None]
    if not can_share or len(present) < 2 or not (ops.split_pieces or ops.concat_pieces):
        return SPLIT, split
    alive = active_channels(gates).sum()
    couts = gamma_out(gates)
    shared = sum(torch.as_tensor(resource.conv(specs[i], cin, alive)) - torch.as_tensor(resource.conv(specs[i], cin, couts[i]))
                 for i in present) + (len(present) - 1) * torch.as_tensor(resource.add(h, w, alive))
    cheaper = float(torch.as_tensor(shared).detach()) < float(torch.as_tensor(split).detach())
    return (SHARED, shared) if cheaper else (SPLIT, split)


def shareable(layer: dict) -> bool:
    """An arch.json layer SHARED assembly can serve: no skip, normal convs only (a depthwise op reads one channel)."""
    return layer["skip"] is None and all(op["conv_type"] == "normal" for op in layer["ops"])


def arch_layer_assembly(resource: Resource, layer: dict) -> tuple[str, float]:
    """`layer_assembly` of an arch.json layer: how export assembles it and what that costs beyond its convs."""
    gates = torch.zeros(len(layer["ops"]), layer["cout"])
    for i, op in enumerate(layer["ops"]):
        gates[i, op["keep"]] = 1.0
    specs = [ConvSpec.from_dict(op["spec"]) if op["keep"] else None for op in layer["ops"]]
    h, w = (math.ceil(n / layer["stride"]) for n in layer["in_hw"])
    with torch.no_grad():
        kind, cost = layer_assembly(resource, specs, torch.tensor(float(len(layer["active_in"]))), gates, h, w,
                                    shareable(layer))
    return kind, float(cost)


def create_resource(name: str, table: Any = None) -> Resource:
    """`params`, `flops` or `latency` (which needs a LatencyTable)."""
    try:
        cls = RESOURCES[name]
    except KeyError:
        raise FgnasError(f"unknown resource {name!r}: use one of {', '.join(RESOURCES)}") from None
    return cls.from_table(table)
