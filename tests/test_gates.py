import math

import pytest
import torch

from search.gates import binarize, gate, gate_probability, hard_gate, init_psi


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_gate_forward_is_the_indicator_psi_on_greater_than_psi_off():
    psi = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 1.0], [-1.0, -2.0]])
    assert gate(psi).tolist() == [1.0, 0.0, 0.0, 1.0]  # a tie is off: I[psi_on > psi_off]
    assert hard_gate(psi).tolist() == [1.0, 0.0, 0.0, 1.0]


def test_gate_backward_is_the_gradient_of_softmax_on():
    psi = torch.tensor([[2.0, 1.0], [0.0, 3.0]], requires_grad=True)
    weights = torch.tensor([1.5, -2.0])
    (gate(psi) * weights).sum().backward()
    # softmax_on = sigmoid(on - off); d/d on = p(1-p), d/d off = -p(1-p); hand values of sigmoid(1), sigmoid(-3)
    p0, p1 = _sig(1.0), _sig(-3.0)
    assert p0 * (1 - p0) == pytest.approx(0.19661193, abs=1e-8)
    assert p1 * (1 - p1) == pytest.approx(0.04517666, abs=1e-8)
    expected = [1.5 * 0.19661193, -1.5 * 0.19661193, -2.0 * 0.04517666, 2.0 * 0.04517666]
    assert psi.grad.flatten().tolist() == pytest.approx(expected, abs=1e-7)


def test_gate_backward_matches_autograd_of_softmax_on_for_a_layer_of_gates():
    torch.manual_seed(0)
    psi = torch.randn(3, 7, 2, requires_grad=True)
    upstream = torch.randn(3, 7)
    (gate(psi) * upstream).sum().backward()
    ours = psi.grad.clone()
    psi.grad = None
    (gate_probability(psi) * upstream).sum().backward()
    assert torch.allclose(ours, psi.grad, atol=1e-6)


def test_binarize_is_binary_forward_and_identity_backward():
    x = torch.tensor([0.0, 0.5, 2.0, 3.0], requires_grad=True)
    y = binarize(x)
    assert y.tolist() == [0.0, 1.0, 1.0, 1.0]
    (y * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_initial_gates_are_all_on():
    psi = init_psi(2, 5)
    assert psi.shape == (2, 5, 2)
    assert hard_gate(psi).sum() == 10
