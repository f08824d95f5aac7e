"""The resource regularizer of Eq. 7-10: phi per operation for params, FLOPs and latency, and the gammas.

Every phi takes channel counts that may be soft tensors (gamma of Eq. 9-10) or plain numbers, so one function serves
the differentiable R(psi) and the exact resource of a hard-gated network. The integer values equal
`profiler.spec.params/flops` (BN folded into the conv: one bias per output channel).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from profiler.errors import FgnasError
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
    (ADD, MEAN, FULLY_CONNECTED, MAX_POOL_2D) through the table's per-op models on their element / MAC counts."""

    unit = "ms"

    @classmethod
    def from_table(cls, table: Any) -> Resource:
        return cls(table)

    def __init__(self, table: Any) -> None:
        if table is None:
            raise FgnasError("a latency target needs a latency table: pass --latency-table device_tables/<device>.json "
                             "(make one with fgnas-profile)")
        self.table = table

    def conv(self, spec: ConvSpec, cin: Count, cout: Count) -> Count:
        if isinstance(cin, Tensor) or isinstance(cout, Tensor):
            return self.table.latency_torch(spec, cin, cout)
        return self.table.latency_torch(spec, torch.tensor(float(cin)), torch.tensor(float(cout))).item()

    def linear(self, cin: Count, cout: int) -> Count:
        return self.table.predict_op_ms("FULLY_CONNECTED", cin * cout)

    def add(self, h: int, w: int, channels: Count) -> Count:
        return self.table.predict_op_ms("ADD", h * w * channels)

    def global_pool(self, h: int, w: int, channels: Count) -> Count:
        return self.table.predict_op_ms("MEAN", h * w * channels)

    def max_pool(self, h: int, w: int, channels: Count) -> Count:
        return self.table.predict_op_ms("MAX_POOL_2D", h * w * channels)


def create_resource(name: str, table: Any = None) -> Resource:
    """`params`, `flops` or `latency` (which needs a LatencyTable)."""
    try:
        cls = RESOURCES[name]
    except KeyError:
        raise FgnasError(f"unknown resource {name!r}: use one of {', '.join(RESOURCES)}") from None
    return cls.from_table(table)
