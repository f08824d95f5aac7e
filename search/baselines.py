"""The simpler ways to meet a target that a search must beat (`fgnas-search --baseline uniform|l1`).

- uniform: the backbone with one width multiplier, the widest (to 0.01) whose resource meets the target, trained from
  scratch for the run's whole epoch budget.
- l1: the pretrained backbone pruned by filter L1 norm (Li et al. 2017, "Pruning Filters for Efficient ConvNets"),
  every layer keeping the same share of its channels, the largest share (to 1/256) that meets the target, then
  fine-tuned on the search's schedule. Layers tied by an identity connection write one channel space (a residual
  stream): they keep one channel set, chosen by the sum over them of each filter's L1 norm normalised per layer.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from profiler.errors import FgnasError
from search.resources import Resource
from search.targets import Target, format_resource

BASELINES = ("uniform", "l1")


def widest_meeting(resource_at: Callable[[float], float], target: float, lo: float, hi: float = 1.0,
                   resolution: float = 0.01) -> float | None:
    """The largest x in [lo, hi] (to `resolution`) with resource_at(x) <= target, for a resource that grows with x;
    None when even `lo` does not meet it."""
    if resource_at(lo) > target:
        return None
    if resource_at(hi) <= target:
        return hi
    while hi - lo > resolution:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if resource_at(mid) <= target else (lo, mid)
    return lo


def uniform_width(build: Callable[[float], object], resource: Resource, target: Target) -> float:
    """The widest width multiplier whose unpruned backbone (`build(width)`) meets the target."""
    width = widest_meeting(lambda w: build(w).full_resource(resource), target.value, lo=0.05)
    if width is None:
        smallest = build(0.05).full_resource(resource)
        raise FgnasError(f"--baseline uniform: no width multiplier meets {target} (width 0.05 is "
                         f"{format_resource(target.resource, smallest)}); raise --target")
    return round(width, 2)


def filter_l1(net) -> dict[str, torch.Tensor]:
    """Per searchable layer, each output channel's filter L1 norm summed over its operations, divided by the layer's
    mean so that layers of different fan-in weigh alike in a residual stream."""
    out = {}
    with torch.no_grad():
        for node in net.nodes:
            layer = net.layers[node.name]
            norms = sum(op.conv.weight.abs().flatten(1).sum(1) for op in layer.ops)
            out[node.name] = norms / norms.mean().clamp(min=1e-12)
    return out


def l1_margins(net, share: float) -> dict[str, torch.Tensor]:
    """Gate margins keeping, in every residual stream (and every other layer), the ceil(share * C) channels of
    largest L1 norm: on (+1) for them in every operation, off (-1) for the rest."""
    scores = filter_l1(net)
    margins = {}
    for stream in net.streams():
        total = sum(scores[name] for name in stream)
        channels = total.numel()
        keep = torch.topk(total, max(1, math.ceil(share * channels - 1e-9))).indices
        for name in stream:
            m = -torch.ones_like(net.layers[name].psi[..., 0])
            m[:, keep] = 1.0
            margins[name] = m
    return margins


def l1_prune(net, resource: Resource, target: Target) -> float:
    """Set the network's gates to the widest L1-norm uniform pruning that meets the target; returns the share."""
    def resource_at(share: float) -> float:
        net.set_margins(l1_margins(net, share))
        net.ensure_alive()
        return net.hard_resource(resource)

    share = widest_meeting(resource_at, target.value, lo=1 / 256, resolution=1 / 256)
    if share is None:
        raise FgnasError(f"--baseline l1: keeping one channel per layer still misses {target}; raise --target")
    resource_at(share)
    return share
