"""The gate parameters' optimizer: SGD on the gate gradient divided by its root mean square over the whole network.

Plain SGD's psi step is lambda * dR/dpsi, whose scale differs by orders of magnitude between resources and
backbones, so a short search may never flip a gate. Adam fixes the scale but normalises every gate on its own: all
channels of a layer share the same regularizer gradient, so once lambda outweighs the task loss they all move at the
same rate and whole layers go off in one step. One network-wide divisor fixes the scale and keeps the ordering: the
gates pushed hardest (expensive channels, little use to the loss) flip first, the others later, so pruning is gradual.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class NormalizedSGD(torch.optim.Optimizer):
    """psi <- psi - lr * grad / rms(grad over all parameters of the optimizer)."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None if closure is None else closure()
        with_grad = [(p, group["lr"]) for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not with_grad:
            return loss
        count = sum(p.grad.numel() for p, _ in with_grad)
        rms = torch.sqrt(sum((p.grad.float() ** 2).sum() for p, _ in with_grad) / count)
        if not torch.isfinite(rms) or rms == 0:
            return loss
        for p, lr in with_grad:
            p.add_(p.grad, alpha=-lr / float(rms))
        return loss
