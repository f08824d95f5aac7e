"""ResNet-20 for CIFAR (He et al. 2016, section 4.2): a 3x3 stem, three stages of three basic blocks (16/32/64
channels), global pooling and a Linear.

Downsampling blocks use a 1x1 stride-2 projection shortcut (option B), so that every identity connection is a plain
add of two layers' outputs. `reduce_skip=True` inserts the paper's 1x1 conv after each identity connection
(section 3.4) in front of a block's first 3x3 conv.
"""
from __future__ import annotations

from search.backbones.registry import GraphBuilder, register_backbone, scale_channels
from search.network import SearchNetwork
from search.search_space import SearchSpace


def _resnet_cifar(space: SearchSpace, blocks: int, num_classes: int, input_size: int, in_channels: int,
                  width: float, reduce_skip: bool) -> SearchNetwork:
    b = GraphBuilder(space, in_channels, input_size)
    x = b.conv("stem", scale_channels(16, width))
    for stage, base in enumerate((16, 32, 64), start=1):
        channels = scale_channels(base, width)
        for block in range(blocks):
            name = f"layer{stage}_{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            first_input = x
            if reduce_skip and block > 0:
                first_input = b.conv(f"{name}_reduce", channels, kernel=1, input=x, search_ops=False)
            conv1 = b.conv(f"{name}_conv1", channels, stride=stride, input=first_input)
            shortcut = x
            if stride != 1 or b.shapes[x][0] != channels:
                shortcut = b.conv(f"{name}_shortcut", channels, kernel=1, stride=stride, activation="none",
                                  input=x, search_ops=False)
            x = b.conv(f"{name}_conv2", channels, activation="none", input=conv1, skip=shortcut,
                       post_activation="relu")
    return b.build(num_classes)


@register_backbone("resnet20")
def resnet20(space: SearchSpace, num_classes: int = 10, input_size: int = 32, in_channels: int = 3,
             width: float = 1.0, reduce_skip: bool = False) -> SearchNetwork:
    return _resnet_cifar(space, 3, num_classes, input_size, in_channels, width, reduce_skip)
