"""The demo CNN for scikit-learn's digits upsampled to 32x32x1: small enough to search on a CPU in a minute.

It only uses conditions the `quick` profiling space covers (32/16/8 inputs, kernels 1/3/5 with the `kernels`
search space, stride 1/2, normal and depthwise, ReLU) and contains one identity connection and one depthwise layer,
so the demo exercises skips (Eq. 3, Eq. 10) and the depthwise rule as well as plain channel pruning.
"""
from __future__ import annotations

from search.backbones.registry import GraphBuilder, register_backbone, scale_channels
from search.network import SearchNetwork
from search.search_space import SearchSpace


@register_backbone("digits")
def digits(space: SearchSpace, num_classes: int = 10, input_size: int = 32, in_channels: int = 1,
           width: float = 1.0) -> SearchNetwork:
    c = [scale_channels(n, width) for n in (16, 32, 64, 128)]
    b = GraphBuilder(space, in_channels, input_size)
    b.conv("conv1", c[0])                        # 32x32
    b.conv("conv2", c[1], stride=2)              # 32 -> 16
    b.conv("conv3", c[1], skip="conv2")          # 16, identity connection
    b.conv("conv4", c[2], stride=2)              # 16 -> 8
    b.conv("dw5", c[2], conv_type="depthwise")   # 8, depthwise
    b.conv("pw5", c[2], kernel=1, search_ops=False)
    b.conv("conv6", c[3], stride=2)              # 8 -> 4
    return b.build(num_classes)
