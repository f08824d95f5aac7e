"""VGG-16 for CIFAR (32x32): thirteen 3x3 conv + BN + ReLU layers, a 2x2 max pool after each stage, one Linear."""
from __future__ import annotations

from search.backbones.registry import GraphBuilder, register_backbone, scale_channels
from search.layer import Pool
from search.network import SearchNetwork
from search.search_space import SearchSpace

# (channels, convs) per stage; a max pool closes each stage
VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


@register_backbone("vgg16")
def vgg16(space: SearchSpace, num_classes: int = 10, input_size: int = 32, in_channels: int = 3,
          width: float = 1.0) -> SearchNetwork:
    b = GraphBuilder(space, in_channels, input_size)
    for stage, (channels, convs) in enumerate(VGG16_STAGES, start=1):
        for i in range(1, convs + 1):
            b.conv(f"conv{stage}_{i}", scale_channels(channels, width), pool=Pool() if i == convs else None)
    return b.build(num_classes)
