"""One operation as the FGNAS paper defines it (conv + folded BN + activation), and its exact cost.

`macs`, `flops` and `params` of a spec at its own channel counts are profiler.cost's formulas (written there once,
for soft counts too). FLOPs follow the paper's convention: 2 x the convolution's multiply-accumulates; the folded-BN
bias add and the activation are not counted in FLOPs but priced in latency, because the table is measured on the
whole fused op. Params count the weights, the folded BN bias and, for PReLU, one slope per output channel.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace

from profiler.cost import conv_flops as flops
from profiler.cost import conv_macs as macs
from profiler.cost import conv_params as params

__all__ = ["ACTIVATIONS", "CONV_TYPES", "KERNELS", "STRIDES", "ConditionKey", "ConvSpec", "flops", "macs", "params"]

ACTIVATIONS = ("none", "relu", "relu6", "prelu", "tanh")
CONV_TYPES = ("normal", "depthwise", "grouped")
KERNELS = tuple(range(1, 12))
STRIDES = (1, 2)


@dataclass(frozen=True)
class ConditionKey:
    """What a per-condition latency model is fitted for: everything except the channel counts."""

    h: int
    w: int
    kernel: int
    stride: int
    conv_type: str
    activation: str
    groups: int = 1  # only meaningful for conv_type == "grouped"

    def __str__(self) -> str:
        kind = f"g{self.groups}" if self.conv_type == "grouped" else self.conv_type
        return f"{self.h}x{self.w}:k{self.kernel}:s{self.stride}:{kind}:{self.activation}"

    @classmethod
    def parse(cls, text: str) -> ConditionKey:
        hw, k, s, kind, act = text.split(":")
        h, w = (int(v) for v in hw.split("x"))
        if kind.startswith("g") and kind[1:].isdigit():
            return cls(h, w, int(k[1:]), int(s[1:]), "grouped", act, int(kind[1:]))
        return cls(h, w, int(k[1:]), int(s[1:]), kind, act)


@dataclass(frozen=True)
class ConvSpec:
    """A 2-D convolution with SAME padding on an NHWC float32 batch-1 input, BN folded, then an activation.

    `groups` is 1 for a normal conv and `cin` for a depthwise conv (depth multiplier cout // cin).
    """

    h: int
    w: int
    cin: int
    cout: int
    kernel: int
    stride: int = 1
    groups: int = 1
    activation: str = "none"

    def __post_init__(self) -> None:
        if min(self.h, self.w, self.cin, self.cout) < 1:
            raise ValueError(f"sizes and channel counts must be positive: {self}")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be 1..11, got {self.kernel}")
        if self.stride not in STRIDES:
            raise ValueError(f"stride must be 1 or 2, got {self.stride}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.groups < 1 or self.cin % self.groups or self.cout % self.groups:
            raise ValueError(f"groups={self.groups} must divide cin={self.cin} and cout={self.cout}")

    @classmethod
    def depthwise(cls, h: int, w: int, channels: int, kernel: int, stride: int = 1,
                  activation: str = "none") -> ConvSpec:
        return cls(h, w, channels, channels, kernel, stride, channels, activation)

    @property
    def conv_type(self) -> str:
        if self.groups == 1:
            return "normal"
        return "depthwise" if self.groups == self.cin else "grouped"

    @property
    def out_hw(self) -> tuple[int, int]:
        """SAME padding: output is ceil(input / stride)."""
        return math.ceil(self.h / self.stride), math.ceil(self.w / self.stride)

    @property
    def condition(self) -> ConditionKey:
        groups = self.groups if self.conv_type == "grouped" else 1
        return ConditionKey(self.h, self.w, self.kernel, self.stride, self.conv_type, self.activation, groups)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ConvSpec:
        return cls(**{k: d[k] for k in ("h", "w", "cin", "cout", "kernel", "stride", "groups", "activation")})

    def with_channels(self, cin: int, cout: int) -> ConvSpec:
        groups = cin if self.conv_type == "depthwise" else self.groups
        return replace(self, cin=cin, cout=cout, groups=groups)

    def config_hash(self) -> str:
        """Stable identity of this configuration: the raw-log key and the model-cache file name."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @classmethod
    def parse(cls, text: str) -> ConvSpec:
        """`HxWxCIN:COUT:kK:sS[:dw][:ACT]`, e.g. `28x28x64:96:k3:s1:dw:relu` (the CLI's --conv)."""
        parts = text.split(":")
        try:
            h, w, cin = (int(v) for v in parts[0].split("x"))
            cout = int(parts[1])
            kernel = int(parts[2].removeprefix("k"))
            stride = int(parts[3].removeprefix("s"))
        except (ValueError, IndexError) as exc:
            raise ValueError(f"cannot read conv {text!r}: expected HxWxCIN:COUT:kK:sS[:dw][:act]") from exc
        flags = parts[4:]
        activation = next((f for f in flags if f in ACTIVATIONS), "none")
        if "dw" in flags:
            return cls(h, w, cin, cout, kernel, stride, cin, activation)
        return cls(h, w, cin, cout, kernel, stride, 1, activation)

