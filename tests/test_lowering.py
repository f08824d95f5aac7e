"""profiler.lowering: the ops a searched architecture becomes, by hand, and against the .tflite export writes."""
import pytest
import torch

from profiler.lowering import differences, lower_arch, merge_ops, op_key
from profiler.model_ops import ConvOp, OtherOp
from profiler.spec import ConvSpec
from search.layer import LayerNode
from search.network import HeadSpec, SearchNetwork
from search.operations import OpSpec

ON, OFF = [0.5, -0.5], [-0.5, 0.5]


def _gates(keeps: list[list[int]], channels: int) -> torch.Tensor:
    return torch.tensor([[ON if c in keep else OFF for c in range(channels)] for keep in keeps])


def _mixed_net() -> SearchNetwork:
    """input 2ch 4x4 -> l1 (3ch, stride 2: 1x1 keeps 0,1 and 3x3 keeps 1,2) -> l2 (3ch: 1x1 keeps 1, skip from l1)
    -> head (4 classes)."""
    l1 = LayerNode("l1", "input", (4, 4), 2, 3, 2, (OpSpec("normal", 1, "relu"), OpSpec("normal", 3, "relu")))
    l2 = LayerNode("l2", "l1", (2, 2), 3, 3, 1, (OpSpec("normal", 1, "none"),), skip="l1")
    net = SearchNetwork([l1, l2], HeadSpec("l2", (2, 2), 3, 4), in_channels=2, input_size=4)
    with torch.no_grad():
        net.layers["l1"].psi.copy_(_gates([[0, 1], [1, 2]], 3))
        net.layers["l2"].psi.copy_(_gates([[1]], 3))
    return net


def _depthwise_net(keeps=([0, 1], [2], [3])) -> SearchNetwork:
    """input 4ch 4x4 -> l1 (4ch: 3x3 depthwise operations, relu / relu6 / tanh, keeping `keeps`) -> head."""
    ops = tuple(OpSpec("depthwise", 3, act) for act in ("relu", "relu6", "tanh"))
    l1 = LayerNode("l1", "input", (4, 4), 4, 4, 1, ops)
    net = SearchNetwork([l1], HeadSpec("l1", (4, 4), 4, 2), in_channels=4, input_size=4)
    with torch.no_grad():
        net.layers["l1"].psi.copy_(_gates(list(keeps), 4))
    return net


def _other(op, inputs, outputs):
    return OtherOp(0, op, inputs, outputs)


def test_a_mixed_layer_and_a_residual_one_by_hand():
    ops = [item.op for item in lower_arch(_mixed_net().to_arch())]
    px = (1, 2, 2)
    assert ops == [
        # l1: the 1x1 on its two channels; the 3x3 behind an explicit PAD (stride 2 on an even size)
        ConvOp(0, ("CONV_2D",), ConvSpec(4, 4, 2, 2, 1, 2, 1, "relu")),
        _other("PAD", ((1, 4, 4, 2), (4, 2)), ((1, 6, 6, 2),)),
        ConvOp(0, ("CONV_2D",), ConvSpec(4, 4, 2, 2, 3, 2, 1, "relu")),
        # channel 0 from the 1x1, 1 from both (one ADD), 2 from the 3x3: each op split in two, three pieces joined
        _other("SPLIT_V", ((*px, 2), (2,), ()), ((*px, 1), (*px, 1))),
        _other("SPLIT_V", ((*px, 2), (2,), ()), ((*px, 1), (*px, 1))),
        _other("ADD", ((*px, 1), (*px, 1)), ((*px, 1),)),
        _other("CONCATENATION", ((*px, 1), (*px, 1), (*px, 1)), ((*px, 3),)),
        # l2: its 1x1 on channel 1; the skip (all three channels) split into {0, 2} and {1}, {1} added
        ConvOp(0, ("CONV_2D",), ConvSpec(2, 2, 3, 1, 1, 1, 1, "none")),
        _other("SPLIT_V", ((*px, 3), (2,), ()), ((*px, 2), (*px, 1))),
        _other("ADD", ((*px, 1), (*px, 1)), ((*px, 1),)),
        _other("CONCATENATION", ((*px, 2), (*px, 1)), ((*px, 3),)),
        _other("MEAN", ((*px, 3), (2,)), ((1, 3),)),
        _other("FULLY_CONNECTED", ((1, 3), (4, 3), (4,)), ((1, 4),)),
    ]


def test_a_shared_layer_computes_every_alive_channel_in_each_operation_and_adds_them():
    ops = [item.op for item in lower_arch(_mixed_net().to_arch(), shared={"l1"})][:4]
    assert ops == [ConvOp(0, ("CONV_2D",), ConvSpec(4, 4, 2, 3, 1, 2, 1, "relu")),
                   _other("PAD", ((1, 4, 4, 2), (4, 2)), ((1, 6, 6, 2),)),
                   ConvOp(0, ("CONV_2D",), ConvSpec(4, 4, 2, 3, 3, 2, 1, "relu")),
                   _other("ADD", ((1, 2, 2, 3), (1, 2, 2, 3)), ((1, 2, 2, 3),))]


def test_depthwise_operations_read_slices_then_gather_and_keep_their_kind_at_one_channel():
    items = lower_arch(_depthwise_net().to_arch())
    assert [op_key(item.op)[:2] for item in items[:6]] == [
        ("STRIDED_SLICE", ((1, 4, 4, 4), (4,), (4,), (4,))), ("CONV", ("DEPTHWISE_CONV_2D",)),
        ("STRIDED_SLICE", ((1, 4, 4, 4), (4,), (4,), (4,))), ("CONV", ("DEPTHWISE_CONV_2D",)),
        ("GATHER", ((1, 4, 4, 4), (1,))), ("CONV", ("DEPTHWISE_CONV_2D", "TANH"))]
    assert items[0].activations == 2 * 16 * 2  # the search counts a copy's input as large as its output
    assert items[1].activations == 16 * 4 + 16 * 2  # and a depthwise conv's input as the layer's whole input


def test_differences_count_each_missing_op_and_ignore_the_order_of_pieces():
    a = _other("CONCATENATION", ((1, 2, 2, 1), (1, 2, 2, 2)), ((1, 2, 2, 3),))
    b = _other("CONCATENATION", ((1, 2, 2, 2), (1, 2, 2, 1)), ((1, 2, 2, 3),))
    add = _other("ADD", ((1, 2, 2, 1), (1, 2, 2, 1)), ((1, 2, 2, 1),))
    assert differences([a, add, add], [b, add]) == ([op_key(add)], [])
    assert merge_ops([[1, 1, 0], [0, 1, 1]]).splits == ((1, 1), (1, 1))


# ---- against the .tflite export writes (TensorFlow's converter: ~5 s to import, ~1 s a model) ------------------

def _exported_ops(net: SearchNetwork, arch: dict, tmp_path, shared=frozenset()):
    from export.prune import prune
    from export.tflite import convert_plan
    from profiler.tflite_reader import read_ops

    path = tmp_path / "model.tflite"
    path.write_bytes(convert_plan(prune(arch, net.state_dict(), shared)))
    return read_ops(path)


@pytest.mark.slow
@pytest.mark.parametrize("make, shared", [(_mixed_net, frozenset()), (_mixed_net, frozenset({"l1"})),
                                          (lambda: _depthwise_net(([0, 1], [], [3])), frozenset())],
                         ids=["split", "shared", "depthwise"])
def test_the_hand_made_architectures_export_exactly_the_lowered_ops(tmp_path, make, shared):
    net = make()
    net.eval()
    net.set_search_mode("finetune")
    arch = net.to_arch()
    expected = [item.op for item in lower_arch(arch, shared)]
    assert differences(expected, _exported_ops(net, arch, tmp_path, shared)) == ([], [])


def _random_case(backbone: str, seed: int, space: str, max_ops: int, tmp_path, **kwargs):
    """A random searched architecture: the rules' op list and the exported one (every layer SPLIT)."""
    from export.sampling import random_searched

    net = random_searched(backbone, seed, max_ops=max_ops, keep=(0.05, 0.5), search_space=space, **kwargs)
    arch = net.to_arch()
    return [item.op for item in lower_arch(arch)], _exported_ops(net, arch, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("backbone, space, max_ops, kwargs", [
    ("digits", "channels", 1, {}),
    ("vgg16", "kernels", 2, {"width": 0.0625}),
])
def test_random_architectures_without_skips_export_exactly_the_lowered_ops(tmp_path, backbone, space, max_ops,
                                                                           kwargs):
    # benchmarks/lowering_equivalence.py runs 20 per backbone and search space
    for seed in range(2):
        assert differences(*_random_case(backbone, seed, space, max_ops, tmp_path, **kwargs)) == ([], [])


@pytest.mark.slow
def test_known_gap_residual_layers_are_exported_in_finer_runs_than_the_rules_count(tmp_path):
    """Export orders a residual stream's channels once, where it starts, and assembles each layer that adds it run
    by run along that order (export/prune.py), and ResNet's ReLU after the add becomes its own op where the last
    op is a CONCATENATION: more SPLIT_V pieces, ADDs and a RELU beyond the one group per set of producers the rules
    (and so the search) count. When export and the rules agree, this test fails: replace it with an equality."""
    rules, exported = _random_case("resnet20", 0, "channels", 1, tmp_path, width=0.25, input_size=16)
    only_rules, only_tflite = differences(rules, exported)
    assert {key[0] for key in only_rules + only_tflite} <= {"SPLIT_V", "ADD", "CONCATENATION", "RELU"}
    assert sum(key[0] == "ADD" for key in only_tflite) > sum(key[0] == "ADD" for key in only_rules)
    assert any(key[0] == "RELU" for key in only_tflite)
