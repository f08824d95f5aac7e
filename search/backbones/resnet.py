"""ResNets for CIFAR: a 3x3 stem, stages of basic blocks (two 3x3 convs and an identity connection), global pooling
and a Linear. ResNet-20 is He et al. 2016's (section 4.2: three stages of three blocks, 16/32/64 channels); ResNet-18
is the usual CIFAR variant of their ImageNet ResNet-18 (Table 1's four stages of two blocks, 64..512 channels) with
the 7x7 stride-2 stem and the max pool replaced by one 3x3 conv, as the paper's Table 6 uses it. Table 6's 26.0G FLOPs
for it is no standard variant's count: this one is 0.56 GMACs (1.11 GFLOPs, 11.2M params), torchvision's ImageNet
ResNet-18 1.82 GMACs at 224x224, this one at 224x224 27.2 GMACs (tests/test_backbones.py).

Downsampling blocks use a 1x1 stride-2 projection shortcut (option B), so that every identity connection is a plain
add of two layers' outputs. `reduce_skip=True` inserts the paper's 1x1 conv after each identity connection
(section 3.4) in front of a block's first 3x3 conv.
"""
from __future__ import annotations

from search.backbones.registry import GraphBuilder, register_backbone, scale_channels
from search.network import SearchNetwork
from search.search_space import SearchSpace

# stem channels, then (channels, blocks) per stage; every stage after the first halves the size
RESNET_STAGES = {"resnet20": (16, ((16, 3), (32, 3), (64, 3))),
                 "resnet18": (64, ((64, 2), (128, 2), (256, 2), (512, 2)))}


def _resnet_cifar(space: SearchSpace, depth: str, num_classes: int, input_size: int, in_channels: int,
                  width: float, reduce_skip: bool) -> SearchNetwork:
    stem, stages = RESNET_STAGES[depth]
    b = GraphBuilder(space, in_channels, input_size)
    x = b.conv("stem", scale_channels(stem, width))
    for stage, (base, blocks) in enumerate(stages, start=1):
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
    return _resnet_cifar(space, "resnet20", num_classes, input_size, in_channels, width, reduce_skip)


@register_backbone("resnet18")
def resnet18(space: SearchSpace, num_classes: int = 10, input_size: int = 32, in_channels: int = 3,
             width: float = 1.0, reduce_skip: bool = False) -> SearchNetwork:
    return _resnet_cifar(space, "resnet18", num_classes, input_size, in_channels, width, reduce_skip)
