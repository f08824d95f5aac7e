import torch
from torch import nn

from search.gate_optimizer import NormalizedSGD


def test_step_is_the_gradient_over_its_network_wide_rms():
    a = nn.Parameter(torch.zeros(2))
    b = nn.Parameter(torch.zeros(2))
    opt = NormalizedSGD([a, b], lr=0.5)
    a.grad = torch.tensor([1.0, -1.0])
    b.grad = torch.tensor([3.0, 3.0])
    opt.step()
    rms = (20 / 4) ** 0.5  # sqrt((1 + 1 + 9 + 9) / 4)
    assert torch.allclose(a, torch.tensor([-0.5 / rms, 0.5 / rms]))
    assert torch.allclose(b, torch.tensor([-1.5 / rms, -1.5 / rms]))


def test_scale_free_and_order_keeping():
    p = nn.Parameter(torch.zeros(3))
    opt = NormalizedSGD([p], lr=1.0)
    p.grad = torch.tensor([1e-9, 2e-9, 4e-9])
    opt.step()
    moved = -p.detach().clone()
    assert moved[2] == 2 * moved[1] == 4 * moved[0]  # channels pushed harder move further (Adam moves all equally)
    assert torch.isclose((moved ** 2).mean().sqrt(), torch.tensor(1.0))


def test_a_zero_gradient_moves_nothing():
    p = nn.Parameter(torch.ones(2))
    opt = NormalizedSGD([p], lr=1.0)
    p.grad = torch.zeros(2)
    opt.step()
    assert torch.equal(p.detach(), torch.ones(2))
