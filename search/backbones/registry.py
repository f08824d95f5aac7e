"""The backbone registry (`@register_backbone`, `create_backbone`) and the graph builder every family uses."""
from __future__ import annotations

import inspect
from collections.abc import Callable

from profiler.errors import FgnasError
from profiler.registry import registrar
from search.layer import LayerNode, Pool
from search.network import HeadSpec, SearchNetwork
from search.operations import OpSpec
from search.search_space import SearchSpace, resolve_search_space

BackboneFn = Callable[..., SearchNetwork]
BACKBONES: dict[str, BackboneFn] = {}


def register_backbone(name: str) -> Callable[[BackboneFn], BackboneFn]:
    return registrar(BACKBONES, name)


def create_backbone(name: str, search_space: str | SearchSpace = "channels", **kwargs) -> SearchNetwork:
    """Build a registered backbone as a SearchNetwork. kwargs: num_classes, input_size, in_channels, width and any
    family-specific option; the family's defaults fill the rest and are recorded in `net.backbone_args`."""
    try:
        fn = BACKBONES[name]
    except KeyError:
        raise FgnasError(f"unknown backbone {name!r}: use one of {', '.join(sorted(BACKBONES))}") from None
    space = resolve_search_space(search_space)
    try:
        bound = inspect.signature(fn).bind(space=space, **kwargs)
    except TypeError as exc:
        raise FgnasError(f"backbone {name}: {exc}") from None
    bound.apply_defaults()
    net = fn(*bound.args, **bound.kwargs)
    net.backbone = name
    net.backbone_args = {"search_space": space.to_str(), **{k: v for k, v in bound.arguments.items() if k != "space"}}
    return net


def scale_channels(channels: int, width: float, divisor: int = 1) -> int:
    """A width multiplier: round to the nearest multiple of `divisor`, never dropping more than 10% (MobileNet's
    make_divisible)."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


class GraphBuilder:
    """Appends searchable layers in execution order, tracking each tensor's channels and size, so that a backbone
    reads like the paper's table of layers."""

    def __init__(self, space: SearchSpace, in_channels: int, input_size: int) -> None:
        self.space = space
        self.in_channels = in_channels
        self.input_size = input_size
        self.nodes: list[LayerNode] = []
        self.shapes: dict[str, tuple[int, tuple[int, int]]] = {"input": (in_channels, (input_size, input_size))}
        self.last = "input"

    def conv(self, name: str, cout: int, kernel: int = 3, stride: int = 1, activation: str = "relu",
             conv_type: str = "normal", *, input: str | None = None, skip: str | None = None,
             post_activation: str = "none", pool: Pool | None = None, search_ops: bool = True) -> str:
        """One searchable layer; `search_ops=False` keeps the backbone's operation (channels are still searched).
        A depthwise layer has as many outputs as inputs (`cout` is ignored)."""
        source = input or self.last
        cin, hw = self.shapes[source]
        if conv_type == "depthwise":
            cout = cin
        base = OpSpec(conv_type, kernel, activation)
        ops = self.space.candidates(base, cin, cout) if search_ops else (base,)
        node = LayerNode(name, source, hw, cin, cout, stride, ops, skip, post_activation, pool)
        self.nodes.append(node)
        self.shapes[name] = (cout, node.out_hw)
        self.last = name
        return name

    def build(self, num_classes: int, dropout: float = 0.0) -> SearchNetwork:
        channels, hw = self.shapes[self.last]
        head = HeadSpec(self.last, hw, channels, num_classes, dropout)
        return SearchNetwork(self.nodes, head, self.in_channels, self.input_size)
