"""MobileNetV2 (Sandler et al. 2018, Table 2) for ImageNet 224, and the usual CIFAR variant (stride-1 stem and
second stage). Channel and kernel search follow the paper's section 4.2: kernels are searched in the depthwise
layers only, channels everywhere."""
from __future__ import annotations

from search.backbones.registry import GraphBuilder, register_backbone, scale_channels
from search.network import SearchNetwork
from search.search_space import SearchSpace

# expansion t, channels c, repeats n, first stride s
INVERTED_RESIDUALS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                      (6, 320, 1, 1))


def _mobilenetv2(space: SearchSpace, num_classes: int, input_size: int, in_channels: int, width: float,
                 stem_stride: int, second_stride: int, dropout: float) -> SearchNetwork:
    b = GraphBuilder(space, in_channels, input_size)
    x = b.conv("stem", scale_channels(32, width, 8), stride=stem_stride, activation="relu6", search_ops=False)
    for stage, (t, c, n, s) in enumerate(INVERTED_RESIDUALS, start=1):
        channels = scale_channels(c, width, 8)
        for i in range(n):
            name = f"block{stage}_{i}"
            stride = (second_stride if stage == 2 else s) if i == 0 else 1
            cin = b.shapes[x][0]
            hidden = b.conv(f"{name}_expand", cin * t, kernel=1, activation="relu6", input=x,
                            search_ops=False) if t != 1 else x
            b.conv(f"{name}_dw", 0, stride=stride, activation="relu6", conv_type="depthwise", input=hidden)
            residual = x if stride == 1 and cin == channels else None
            x = b.conv(f"{name}_project", channels, kernel=1, activation="none", skip=residual, search_ops=False)
    b.conv("head_conv", scale_channels(1280, max(1.0, width), 8), kernel=1, activation="relu6", search_ops=False)
    return b.build(num_classes, dropout)


@register_backbone("mobilenetv2")
def mobilenetv2(space: SearchSpace, num_classes: int = 1000, input_size: int = 224, in_channels: int = 3,
                width: float = 1.0, dropout: float = 0.2) -> SearchNetwork:
    return _mobilenetv2(space, num_classes, input_size, in_channels, width, 2, 2, dropout)


@register_backbone("mobilenetv2_cifar")
def mobilenetv2_cifar(space: SearchSpace, num_classes: int = 10, input_size: int = 32, in_channels: int = 3,
                      width: float = 1.0, dropout: float = 0.2) -> SearchNetwork:
    return _mobilenetv2(space, num_classes, input_size, in_channels, width, 1, 1, dropout)
