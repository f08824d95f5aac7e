"""One "operation" of the paper (Fig. 3): a convolution, a batch norm and an activation, built from a frozen spec.

Convolution types and activations come from registries (the timm ConvNormAct analogue), so a search space names
them and no module branches on them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from torch import Tensor, nn

from profiler.registry import registrar
from profiler.spec import ConvSpec

ConvBuilder = Callable[[int, int, int, int, bool], nn.Conv2d]
ActBuilder = Callable[[int], nn.Module]

CONV_LAYERS: dict[str, ConvBuilder] = {}
ACTIVATION_LAYERS: dict[str, ActBuilder] = {}


def register_conv(name: str) -> Callable[[ConvBuilder], ConvBuilder]:
    return registrar(CONV_LAYERS, name)


def register_activation(name: str, builder: ActBuilder) -> None:
    ACTIVATION_LAYERS[name] = builder


@register_conv("normal")
def _normal(cin: int, cout: int, kernel: int, stride: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=bias)


@register_conv("depthwise")
def _depthwise(cin: int, cout: int, kernel: int, stride: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=cin, bias=bias)


register_activation("none", lambda c: nn.Identity())
register_activation("relu", lambda c: nn.ReLU())
register_activation("relu6", lambda c: nn.ReLU6())
register_activation("prelu", lambda c: nn.PReLU(c, init=0.25))
register_activation("tanh", lambda c: nn.Tanh())


@dataclass(frozen=True)
class OpSpec:
    """What an operation is, independent of where it sits: the layer supplies channels, stride and input size.

    Kernels are odd so that SAME padding is symmetric (`kernel // 2`), as in Table 2 (1, 3, ..., 11).
    """

    conv_type: str = "normal"
    kernel: int = 3
    activation: str = "relu"
    norm: bool = True

    def __post_init__(self) -> None:
        if self.conv_type not in CONV_LAYERS:
            raise ValueError(f"conv type must be one of {sorted(CONV_LAYERS)}, got {self.conv_type!r}")
        if self.kernel not in (1, 3, 5, 7, 9, 11):
            raise ValueError(f"kernel must be odd, 1..11, got {self.kernel}")
        if self.activation not in ACTIVATION_LAYERS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATION_LAYERS)}, got {self.activation!r}")

    @property
    def name(self) -> str:
        prefix = "dw" if self.conv_type == "depthwise" else "conv"
        return f"{prefix}{self.kernel}x{self.kernel}-{self.activation}"

    def conv_spec(self, h: int, w: int, cin: int, cout: int, stride: int) -> ConvSpec:
        """The profiler's description of this op at a given size (depthwise: cin must equal cout)."""
        groups = cin if self.conv_type == "depthwise" else 1
        return ConvSpec(h, w, cin, cout, self.kernel, stride, groups, self.activation)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> OpSpec:
        return cls(d["conv_type"], d["kernel"], d["activation"], d.get("norm", True))


class Operation(nn.Module):
    """conv -> BN -> activation; `conv`, `bn`, `act` are the state_dict names export reads."""

    def __init__(self, spec: OpSpec, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        if spec.conv_type == "depthwise" and cin != cout:
            raise ValueError(f"a depthwise operation needs cin == cout, got {cin} -> {cout}")
        self.spec = spec
        self.conv = CONV_LAYERS[spec.conv_type](cin, cout, spec.kernel, stride, not spec.norm)
        self.bn = nn.BatchNorm2d(cout) if spec.norm else nn.Identity()
        self.act = ACTIVATION_LAYERS[spec.activation](cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))
