"""BatchNorm recalibration: recompute every BN layer's running statistics for the network as it is now.

A short run's running averages (momentum 0.1) lag the weights, and pruning channels changes what every later layer
sees, so an eval-mode network can score far below its batch-statistics self. Resetting the statistics and averaging
them over a few hundred training images (cumulative average: momentum None) gives eval mode the statistics of the
current architecture and weights.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


def recalibrate_batchnorm(net: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], images: int) -> int:
    """Reset the running statistics of every BN layer of `net` and re-estimate them as the plain average over at
    least `images` images from `batches` (or all of them), forwarded in train mode without gradients. Momenta and
    the network's train/eval mode are restored. Returns the number of images used (0 when `net` has no BN)."""
    layers = [m for m in net.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not layers or images <= 0:
        return 0
    momenta = [m.momentum for m in layers]
    was_training = net.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    seen = 0
    try:
        with torch.no_grad():
            for x, _ in batches:
                net(x)
                seen += len(x)
                if seen >= images:
                    break
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        net.train(was_training)
    return seen
