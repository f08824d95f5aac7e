"""The paper's per-channel gates (Eq. 4-5) and the binarizer h() of Eq. 10, as autograd Functions.

A gate's parameters are psi = [psi_on, psi_off] in the last dimension. Forward is the hard indicator
I[psi_on > psi_off]; backward is the gradient of softmax_on(psi) = sigmoid(psi_on - psi_off), so a whole layer's
gates ([M, C, 2]) are evaluated in one vectorized call.
"""
from __future__ import annotations

import torch
from torch import Tensor

# psi_on - psi_off at initialisation: every gate starts on, with softmax_on = sigmoid(1) ~ 0.73 so that the
# regularizer can turn a channel off within a few hundred steps at the paper's learning rates.
GATE_INIT_MARGIN = 1.0


class _Gate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, psi: Tensor) -> Tensor:  # type: ignore[override]
        p_on = torch.sigmoid(psi[..., 0] - psi[..., 1])
        ctx.save_for_backward(p_on)
        return (psi[..., 0] > psi[..., 1]).to(psi.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (p_on,) = ctx.saved_tensors
        d = grad * p_on * (1.0 - p_on)  # d softmax_on / d psi_on; its negative for psi_off
        return torch.stack((d, -d), dim=-1)


class _Binarize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        return (x != 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return grad


def gate(psi: Tensor) -> Tensor:
    """G(psi) of Eq. 4-5: binary in the forward pass, softmax_on(psi) in the backward pass. psi: [..., 2] -> [...]."""
    return _Gate.apply(psi)


def hard_gate(psi: Tensor) -> Tensor:
    """The forward value of `gate` without a graph: I[psi_on > psi_off]."""
    return (psi[..., 0] > psi[..., 1]).to(psi.dtype)


def gate_probability(psi: Tensor) -> Tensor:
    """softmax_on(psi): the relaxed gate whose gradient `gate` uses."""
    return torch.softmax(psi, dim=-1)[..., 0]


def binarize(x: Tensor) -> Tensor:
    """h() of Eq. 10: 1 where x is non-zero in the forward pass, the identity in the backward pass."""
    return _Binarize.apply(x)


def init_psi(*shape: int) -> Tensor:
    """Gate parameters [*shape, 2] with every gate on."""
    psi = torch.zeros(*shape, 2)
    psi[..., 0] = GATE_INIT_MARGIN / 2
    psi[..., 1] = -GATE_INIT_MARGIN / 2
    return psi


class _RecordedGate(torch.autograd.Function):
    """y * g per channel, whose backward also hands each sample's gradient of the loss with respect to g to `sink`."""

    @staticmethod
    def forward(ctx, y: Tensor, g: Tensor, sink) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(y, g)
        ctx.sink = sink
        return y * g.view(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        y, g = ctx.saved_tensors
        per_sample = (grad * y.to(grad.dtype)).sum(dim=(2, 3), dtype=torch.float32)  # [N, C], summed in fp32
        ctx.sink(per_sample)
        return grad * g.view(1, -1, 1, 1).to(grad.dtype), per_sample.sum(0).to(g.dtype), None


def recorded_gate(y: Tensor, g: Tensor, sink) -> Tensor:
    """Multiply y [N, C, H, W] by the gates g [C]; in the backward pass, sink([N, C]) receives d(loss)/d(g) of each
    sample's share of the batch loss, from which the layer estimates what removing a channel would cost the task."""
    return _RecordedGate.apply(y, g, sink)
