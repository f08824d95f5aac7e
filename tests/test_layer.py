import pytest
import torch

from profiler.errors import FgnasError
from search.layer import LayerNode, SearchableLayer
from search.operations import Operation, OpSpec
from search.search_space import SearchSpace, parse_search_space


def _layer(ops, cin=4, cout=4, skip=None, post="none"):
    node = LayerNode("l", "input", (6, 6), cin, cout, 1, tuple(ops), skip, post)
    torch.manual_seed(0)
    return SearchableLayer(node).eval()


def test_layer_output_is_the_mean_of_gated_operations_plus_skip():
    layer = _layer([OpSpec("normal", 1, "relu"), OpSpec("normal", 3, "tanh")], skip="s")
    x = torch.randn(2, 4, 6, 6)
    skip = torch.randn(2, 4, 6, 6)
    gates = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    y = layer(x, gates, skip)
    o1, o2 = layer.ops[0](x), layer.ops[1](x)
    expected = skip + 0.5 * (gates[0].view(1, -1, 1, 1) * o1 + gates[1].view(1, -1, 1, 1) * o2)
    assert torch.allclose(y, expected, atol=1e-6)
    # channel 1 has every gate off: only the identity connection is left
    assert torch.equal(y[:, 1], skip[:, 1])


def test_an_operation_whose_fixed_gates_are_all_off_is_not_computed():
    layer = _layer([OpSpec("normal", 1, "relu"), OpSpec("normal", 3, "relu"), OpSpec("normal", 5, "relu")])
    x = torch.randn(2, 4, 6, 6)
    calls = []
    for i, op in enumerate(layer.ops):
        op.register_forward_hook(lambda *_, i=i: calls.append(i))
    gates = torch.tensor([[0.0] * 4, [1.0, 0.0, 1.0, 0.0], [0.0] * 4])
    y = layer(x, gates)
    assert calls == [1]
    assert torch.allclose(y, gates[1].view(1, -1, 1, 1) * layer.ops[1](x) / 3, atol=1e-6)
    calls.clear()
    assert torch.equal(layer(x, torch.zeros(3, 4)), torch.zeros(2, 4, 6, 6)) and calls == [0]  # one, for the shape
    layer.recording = True  # the search records every operation's value, kept or not
    calls.clear()
    layer(x, gates)
    assert calls == [0, 1, 2]


def test_channel_with_all_gates_off_is_zero_through_post_activation():
    layer = _layer([OpSpec("normal", 3, "none"), OpSpec("normal", 5, "none")], post="relu")
    y = layer(torch.randn(1, 4, 6, 6), torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]]))
    assert torch.count_nonzero(y[:, 1]) == 0
    assert torch.count_nonzero(y[:, 0]) > 0


def test_ungated_forward_equals_all_gates_on():
    layer = _layer([OpSpec("normal", 1, "relu"), OpSpec("normal", 3, "relu")])
    x = torch.randn(2, 4, 6, 6)
    assert torch.allclose(layer(x), layer(x, torch.ones(2, 4)), atol=1e-6)


def test_depthwise_channel_is_pruned_with_its_input_channel():
    layer = _layer([OpSpec("depthwise", 3, "relu"), OpSpec("normal", 1, "relu")])
    eff = layer.effective_gates(torch.ones(2, 4), torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert eff.tolist() == [[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]


def test_operation_builds_conv_bn_activation_from_its_spec():
    op = Operation(OpSpec("depthwise", 5, "prelu"), 8, 8, 2)
    assert op.conv.groups == 8 and op.conv.kernel_size == (5, 5) and op.conv.stride == (2, 2)
    assert op.conv.bias is None and op.act.weight.shape == (8,)
    assert op(torch.randn(1, 8, 7, 7)).shape == (1, 8, 4, 4)  # SAME padding: ceil(7 / 2)
    plain = Operation(OpSpec("normal", 1, "none", norm=False), 3, 5, 1)
    assert plain.conv.bias is not None and isinstance(plain.bn, torch.nn.Identity)


def test_op_spec_rejects_even_kernels_and_unknown_names():
    with pytest.raises(ValueError):
        OpSpec("normal", 4)
    with pytest.raises(ValueError):
        OpSpec("dilated", 3)
    with pytest.raises(ValueError):
        OpSpec("normal", 3, "gelu")
    with pytest.raises(ValueError):
        Operation(OpSpec("depthwise", 3), 4, 8, 1)


def test_search_space_candidates_replace_only_the_named_factors():
    base = OpSpec("normal", 3, "relu")
    assert parse_search_space("channels").candidates(base, 8, 16) == (base,)
    kernels = parse_search_space("kernels").candidates(base, 8, 16)
    assert [op.kernel for op in kernels] == [1, 3, 5] and {op.activation for op in kernels} == {"relu"}
    mixed = SearchSpace("x", conv_types=("normal", "depthwise")).candidates(base, 8, 16)
    assert mixed == (base,)  # depthwise needs cin == cout
    assert len(parse_search_space("table2").candidates(base, 16, 16)) == 2 * 6 * 3
    custom = parse_search_space("k=3,5;act=relu,tanh")
    assert len(custom.candidates(base, 4, 4)) == 4 and custom.to_str() == "k=3,5;act=relu,tanh"


def test_unknown_search_space_is_an_fgnas_error():
    with pytest.raises(FgnasError, match="unknown search space"):
        parse_search_space("huge")
    with pytest.raises(FgnasError):
        parse_search_space("k=2,4")


def test_ensure_alive_reopens_a_dead_layer_only_where_its_input_is_alive():
    from search.backbones import create_backbone
    from search.gates import hard_gate

    net = create_backbone("digits", search_space="kernels")
    with torch.no_grad():
        conv4, dw5 = net.layers["conv4"].psi, net.layers["dw5"].psi
        conv4[..., 0], conv4[..., 1] = -1.0, 1.0
        conv4[1, 10] = torch.tensor([0.5, -0.5])  # conv4 keeps only channel 10
        dw5[..., 0], dw5[..., 1] = -1.0, 1.0
        dw5[0, 3] = torch.tensor([0.5, -0.5])  # on, but its input channel 3 is pruned: the layer is dead
        dw5[2, 10] = torch.tensor([-0.2, 0.2])  # the most nearly-on gate over a live input
    assert net.ensure_alive() == ["dw5"]
    assert hard_gate(net.layers["dw5"].psi)[2, 10] == 1
    assert all(row["active_out"] > 0 for row in net.layer_summary())
    assert net.ensure_alive() == []
