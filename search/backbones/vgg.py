"""VGG for CIFAR (32x32): 3x3 conv + BN + ReLU layers in five stages, a 2x2 max pool after each stage, one Linear on
the globally pooled features (Simonyan & Zisserman 2015, Table 1: D is VGG-16, E is VGG-19)."""
from __future__ import annotations

from search.backbones.registry import GraphBuilder, register_backbone, scale_channels
from search.layer import Pool
from search.network import SearchNetwork
from search.search_space import SearchSpace

# (channels, convs) per stage
VGG_STAGES = {"vgg16": ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),
              "vgg19": ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))}


def _vgg(space: SearchSpace, stages: tuple[tuple[int, int], ...], num_classes: int, input_size: int,
         in_channels: int, width: float, pool_last: bool) -> SearchNetwork:
    b = GraphBuilder(space, in_channels, input_size)
    for stage, (channels, convs) in enumerate(stages, start=1):
        closes = pool_last or stage < len(stages)
        for i in range(1, convs + 1):
            b.conv(f"conv{stage}_{i}", scale_channels(channels, width), pool=Pool() if closes and i == convs else None)
    return b.build(num_classes)


@register_backbone("vgg16")
def vgg16(space: SearchSpace, num_classes: int = 10, input_size: int = 32, in_channels: int = 3,
          width: float = 1.0) -> SearchNetwork:
    return _vgg(space, VGG_STAGES["vgg16"], num_classes, input_size, in_channels, width, pool_last=True)


@register_backbone("vgg19")
def vgg19(space: SearchSpace, num_classes: int = 10, input_size: int = 32, in_channels: int = 3,
          width: float = 1.0) -> SearchNetwork:
    """Network slimming's CIFAR VGG-19 (Liu et al. 2017), the paper's Table 6 baseline: no pool after the last stage,
    whose 2x2 map the head averages (their AvgPool2d(2))."""
    return _vgg(space, VGG_STAGES["vgg19"], num_classes, input_size, in_channels, width, pool_last=False)
