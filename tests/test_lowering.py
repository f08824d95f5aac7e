"""profiler.lowering: the ops a searched architecture becomes, by hand, against the .tflite export writes, and
against what the search prices."""
from functools import cache
from pathlib import Path

import pytest
import torch

from profiler.channel_order import SKIP
from profiler.latency.table import LatencyTable
from profiler.lowering import (
    MergeOps,
    activation_per_run,
    differences,
    lower_arch,
    op_key,
    post_activation_op,
)
from profiler.model_ops import ConvOp, OtherOp
from profiler.spec import ConvSpec
from search.layer import LayerNode
from search.network import HeadSpec, SearchNetwork
from search.operations import OpSpec
from search.resources import create_resource

ON, OFF = [0.5, -0.5], [-0.5, 0.5]
TABLE = Path(__file__).resolve().parents[1] / "device_tables" / "host-amd-f26m2s1.json"
# Reduced widths and input sizes, as benchmarks/lowering_equivalence.py uses: the rules do not depend on them.
SMALL = {"resnet20": {"width": 0.25, "input_size": 16}, "mobilenetv2_cifar": {"width": 0.25, "input_size": 16},
         "vgg16": {"width": 0.0625}}


def _gates(keeps: list[list[int]], channels: int) -> torch.Tensor:
    return torch.tensor([[ON if c in keep else OFF for c in range(channels)] for keep in keeps])


def _net(nodes: list[LayerNode], keeps: dict[str, list[list[int]]], in_channels: int, classes: int = 4
         ) -> SearchNetwork:
    """The layers `nodes` and a head, each layer's operations keeping the channels `keeps` gives it."""
    last = nodes[-1]
    net = SearchNetwork(nodes, HeadSpec(last.name, last.out_hw, last.cout, classes), in_channels=in_channels,
                        input_size=nodes[0].in_hw[0])
    with torch.no_grad():
        for name, keep in keeps.items():
            net.layers[name].psi.copy_(_gates(keep, net.layers[name].node.cout))
    return net


def _mixed_net() -> SearchNetwork:
    """input 2ch 4x4 -> l1 (3ch, stride 2: 1x1 keeps 0,1 and 3x3 keeps 1,2) -> l2 (3ch: 1x1 keeps 1, skip from l1)
    -> head (4 classes)."""
    l1 = LayerNode("l1", "input", (4, 4), 2, 3, 2, (OpSpec("normal", 1, "relu"), OpSpec("normal", 3, "relu")))
    l2 = LayerNode("l2", "l1", (2, 2), 3, 3, 1, (OpSpec("normal", 1, "none"),), skip="l1")
    return _net([l1, l2], {"l1": [[0, 1], [1, 2]], "l2": [[1]]}, 2)


def _depthwise_net(keeps=([0, 1], [2], [1, 3])) -> SearchNetwork:
    """input 4ch 4x4 -> l1 (4ch: 3x3 depthwise operations, relu / relu6 / tanh, keeping `keeps`) -> head."""
    ops = tuple(OpSpec("depthwise", 3, act) for act in ("relu", "relu6", "tanh"))
    return _net([LayerNode("l1", "input", (4, 4), 4, 4, 1, ops)], {"l1": list(keeps)}, 4, classes=2)


def _residual_net() -> SearchNetwork:
    """input 2ch 4x4 -> a (4ch, 1x1, all kept) -> b (1x1 keeps 0,1,2 and 3x3 keeps 2,3; skip a; relu after the add)
    -> c (1x1 keeps 0; skip b; relu after the add) -> head (4 classes): ResNet's blocks, one stream a -> b -> c."""
    post = {"post_activation": "relu"}
    a = LayerNode("a", "input", (4, 4), 2, 4, 1, (OpSpec("normal", 1, "relu"),))
    b = LayerNode("b", "a", (4, 4), 4, 4, 1, (OpSpec("normal", 1, "none"), OpSpec("normal", 3, "none")), skip="a",
                  **post)
    c = LayerNode("c", "b", (4, 4), 4, 4, 1, (OpSpec("normal", 1, "none"),), skip="b", **post)
    return _net([a, b, c], {"a": [[0, 1, 2, 3]], "b": [[0, 1, 2], [2, 3]], "c": [[0]]}, 2)


def _post_net(post: str) -> SearchNetwork:
    """input 2ch 4x4 -> a (4ch, 1x1) -> b (1x1 keeps 0; skip a) -> c (1x1 keeps all; skip b), `post` after each
    add: b's runs are an ADD and the skip's rest, c's one ADD."""
    a = LayerNode("a", "input", (4, 4), 2, 4, 1, (OpSpec("normal", 1, "relu"),))
    b = LayerNode("b", "a", (4, 4), 4, 4, 1, (OpSpec("normal", 1, "none"),), skip="a", post_activation=post)
    c = LayerNode("c", "b", (4, 4), 4, 4, 1, (OpSpec("normal", 1, "none"),), skip="b", post_activation=post)
    return _net([a, b, c], {"a": [[0, 1, 2, 3]], "b": [[0]], "c": [[0, 1, 2, 3]]}, 2)


def _scaled_net() -> SearchNetwork:
    """input 2ch 4x4 -> l1 (3ch, stride 2: 3x3 relu keeps 0,1 and 3x3 tanh keeps 1,2) -> l2 (3ch: 1x1 keeps 0,
    skip from l1) -> head: l1's output is added unscaled, so its 1/2 average is l1's own."""
    ops = (OpSpec("normal", 3, "relu"), OpSpec("normal", 3, "tanh"))
    l1 = LayerNode("l1", "input", (4, 4), 2, 3, 2, ops)
    l2 = LayerNode("l2", "l1", (2, 2), 3, 3, 1, (OpSpec("normal", 1, "none"),), skip="l1")
    return _net([l1, l2], {"l1": [[0, 1], [1, 2]], "l2": [[0]]}, 2)


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
        # channel 1 from both (one ADD; first: l2 adds it), 0 from the 1x1, 2 from the 3x3: each op split in two,
        # three runs joined
        _other("SPLIT_V", ((*px, 2), (2,), ()), ((*px, 1), (*px, 1))),
        _other("SPLIT_V", ((*px, 2), (2,), ()), ((*px, 1), (*px, 1))),
        _other("ADD", ((*px, 1), (*px, 1)), ((*px, 1),)),
        _other("CONCATENATION", ((*px, 1), (*px, 1), (*px, 1)), ((*px, 3),)),
        # l2: its 1x1 on channel 1; the skip (l1's order: 1, then 0 and 2) split into {1}, added, and {0, 2}
        ConvOp(0, ("CONV_2D",), ConvSpec(2, 2, 3, 1, 1, 1, 1, "none")),
        _other("SPLIT_V", ((*px, 3), (2,), ()), ((*px, 1), (*px, 2))),
        _other("ADD", ((*px, 1), (*px, 1)), ((*px, 1),)),
        _other("CONCATENATION", ((*px, 1), (*px, 2)), ((*px, 3),)),
        _other("MEAN", ((*px, 3), (2,)), ((1, 3),)),
        _other("FULLY_CONNECTED", ((1, 3), (4, 3), (4,)), ((1, 4),)),
    ]


def test_a_shared_layer_computes_every_alive_channel_in_each_operation_and_adds_them():
    ops = [item.op for item in lower_arch(_mixed_net().to_arch(), shared={"l1"})][:4]
    assert ops == [ConvOp(0, ("CONV_2D",), ConvSpec(4, 4, 2, 3, 1, 2, 1, "relu")),
                   _other("PAD", ((1, 4, 4, 2), (4, 2)), ((1, 6, 6, 2),)),
                   ConvOp(0, ("CONV_2D",), ConvSpec(4, 4, 2, 3, 3, 2, 1, "relu")),
                   _other("ADD", ((1, 2, 2, 3), (1, 2, 2, 3)), ((1, 2, 2, 3),))]


def test_depthwise_operations_slice_contiguous_channels_gather_the_others_and_keep_their_kind_at_one_channel():
    # the network input's order is fixed: {0, 1} and {2} are slices of it, {1, 3} is not
    items = lower_arch(_depthwise_net().to_arch())
    assert [op_key(item.op)[:2] for item in items[:6]] == [
        ("STRIDED_SLICE", ((1, 4, 4, 4), (4,), (4,), (4,))), ("CONV", ("DEPTHWISE_CONV_2D",)),
        ("STRIDED_SLICE", ((1, 4, 4, 4), (4,), (4,), (4,))), ("CONV", ("DEPTHWISE_CONV_2D",)),
        ("GATHER", ((1, 4, 4, 4), (2,))), ("CONV", ("DEPTHWISE_CONV_2D", "TANH"))]
    assert items[0].activations == 2 * 16 * 2  # the search counts a copy's input as large as its output
    assert items[1].activations == 16 * 4 + 16 * 2  # and a depthwise conv's input as the layer's whole input


def test_operations_share_a_pad_of_the_same_kernel_and_a_tanh_pays_a_mul_for_the_average():
    ops = [item.op for item in lower_arch(_scaled_net().to_arch())][:4]
    assert ops == [_other("PAD", ((1, 4, 4, 2), (4, 2)), ((1, 6, 6, 2),)),  # one PAD: the converter merges the two
                   ConvOp(0, ("CONV_2D",), ConvSpec(4, 4, 2, 2, 3, 2, 1, "relu")),  # 1/2 folded into the weights
                   ConvOp(0, ("CONV_2D", "TANH"), ConvSpec(4, 4, 2, 2, 3, 2, 1, "tanh")),
                   _other("MUL", ((1, 2, 2, 2), ()), ((1, 2, 2, 2),))]  # tanh(z) / 2: no fold through a tanh


def test_a_residual_stream_is_assembled_in_the_runs_of_its_one_order_and_relu_fuses_only_into_all_add_layers():
    ops = [item.op for item in lower_arch(_residual_net().to_arch())]
    px = (1, 4, 4)
    # the stream's order is chosen where it starts (a), by the Gray rank of which of b's and c's operations keep
    # each channel (b's first): 1 (b's 1x1), 0 (b's 1x1 and c's), 2 (both of b's), 3 (b's 3x3)
    assert ops[1:] == [
        ConvOp(0, ("CONV_2D",), ConvSpec(4, 4, 4, 3, 1, 1, 1, "none")),
        ConvOp(0, ("CONV_2D",), ConvSpec(4, 4, 4, 2, 3, 1, 1, "none")),
        # b: runs {skip, 1x1} 1 0 | {skip, 1x1, 3x3} 2 | {skip, 3x3} 3: every run an ADD, so each applies the ReLU
        _other("SPLIT_V", ((*px, 4), (3,), ()), ((*px, 2), (*px, 1), (*px, 1))),
        _other("SPLIT_V", ((*px, 3), (2,), ()), ((*px, 2), (*px, 1))),
        _other("SPLIT_V", ((*px, 2), (2,), ()), ((*px, 1), (*px, 1))),
        _other("ADD", ((*px, 2), (*px, 2)), ((*px, 2),)),
        _other("ADD", ((*px, 1), (*px, 1)), ((*px, 1),)),
        _other("ADD", ((*px, 1), (*px, 1)), ((*px, 1),)),
        _other("ADD", ((*px, 1), (*px, 1)), ((*px, 1),)),
        _other("CONCATENATION", ((*px, 2), (*px, 1), (*px, 1)), ((*px, 4),)),
        # c: its 1x1 keeps 0, second in the stream's order: the skip splits in three runs (one per set of
        # producers would be two), and the runs that are no ADD leave the ReLU an op of its own after the concat
        ConvOp(0, ("CONV_2D",), ConvSpec(4, 4, 4, 1, 1, 1, 1, "none")),
        _other("SPLIT_V", ((*px, 4), (3,), ()), ((*px, 1), (*px, 1), (*px, 2))),
        _other("ADD", ((*px, 1), (*px, 1)), ((*px, 1),)),
        _other("CONCATENATION", ((*px, 1), (*px, 1), (*px, 2)), ((*px, 4),)),
        _other("RELU", ((*px, 4),), ((*px, 4),)),
        _other("MEAN", ((*px, 4), (2,)), ((1, 4),)),
        _other("FULLY_CONNECTED", ((1, 4), (4, 4), (4,)), ((1, 4),)),
    ]


def test_merge_ops_count_pieces_adds_and_concat_run_by_run():
    # a skip whose order interleaves the producer sets: {skip, op0} 2 channels | {skip} 1 | {skip, op0} 1
    merge = MergeOps(((frozenset({SKIP, 0}), 2), (frozenset({SKIP}), 1), (frozenset({SKIP, 0}), 1)))
    assert merge.add_channels == (2, 1)
    assert merge.splits == ((2, 1, 1), (2, 1))  # the skip feeds three runs, op0 two
    assert (merge.split_channels, merge.concat_pieces, merge.concat_channels, merge.overlap) == ((4, 3), 3, 4, 3)
    one = MergeOps(((frozenset({0}), 5),))
    assert (one.splits, one.add_channels, one.concat_pieces) == ((), (), 0)


def test_a_post_activation_is_an_op_unless_every_run_is_an_add_that_applies_it():
    adds = MergeOps(((frozenset({SKIP, 0}), 2), (frozenset({SKIP, 1}), 1)))
    mixed = MergeOps(((frozenset({SKIP, 0}), 2), (frozenset({SKIP}), 1)))
    assert activation_per_run("relu", (2, 2)) and activation_per_run("relu6", (3,))
    assert not activation_per_run("relu", (2, 1)) and not activation_per_run("prelu", (2, 2))
    assert [post_activation_op(a, adds) for a in ("none", "relu", "relu6", "prelu", "tanh")] == \
        [None, None, None, "PRELU", "TANH"]
    assert [post_activation_op(a, mixed) for a in ("none", "relu", "relu6")] == [None, "RELU", "RELU6"]


def test_differences_count_each_missing_op_and_ignore_the_order_of_pieces():
    a = _other("CONCATENATION", ((1, 2, 2, 1), (1, 2, 2, 2)), ((1, 2, 2, 3),))
    b = _other("CONCATENATION", ((1, 2, 2, 2), (1, 2, 2, 1)), ((1, 2, 2, 3),))
    add = _other("ADD", ((1, 2, 2, 1), (1, 2, 2, 1)), ((1, 2, 2, 1),))
    assert differences([a, add, add], [b, add]) == ([op_key(add)], [])


# ---- what the search prices: the same ops --------------------------------------------------------------------

@cache
def _host_table() -> LatencyTable:
    return LatencyTable.load(TABLE)


def _search_priced(resource, items) -> float:
    """What the search's latency resource charges for lowered ops: each op's table price less the invoke overhead
    (never below zero), its in-network cost on the activations the search counts for it (Lowered.activations),
    and the overhead once (search.resources.LatencyResource)."""
    return resource.base() + sum(resource._in_network(resource.table.price_op(item.op)[0])
                                 + resource._network(item.op.weights, item.activations) for item in items)


@pytest.mark.parametrize("backbone, space, max_ops, tied", [
    ("resnet20", "kernels", 2, False), ("resnet20", "channels", 1, False), ("resnet20", "kernels", 2, True),
    ("resnet20", "activations", 2, False), ("vgg16", "kernels", 2, False), ("digits", "activations", 2, False),
])
def test_the_search_prices_exactly_the_ops_lower_arch_lists(backbone, space, max_ops, tied):
    from export.assembly import shared_layers
    from export.sampling import random_searched

    latency = create_resource("latency", _host_table())
    for seed in range(2):
        net = random_searched(backbone, seed, max_ops=max_ops, keep=(0.05, 0.5), search_space=space,
                              **SMALL.get(backbone, {}))
        if tied:  # the search's default: a residual stream's layers keep one channel set
            net.tie_streams()
            net.ensure_alive()
        arch = net.to_arch()
        lowered = lower_arch(arch, shared_layers(arch, _host_table()))
        assert net.hard_resource(latency) == pytest.approx(_search_priced(latency, lowered), rel=1e-6)


# ---- against the .tflite export writes (TensorFlow's converter: ~5 s to import, ~1 s a model) ------------------

def _exported_ops(net: SearchNetwork, arch: dict, tmp_path, shared=frozenset()):
    from export.prune import prune
    from export.tflite import convert_plan
    from profiler.latency.tflite_reader import read_ops

    path = tmp_path / "model.tflite"
    path.write_bytes(convert_plan(prune(arch, net.state_dict(), shared)))
    return read_ops(path)


@pytest.mark.slow
@pytest.mark.parametrize("make, shared", [(_mixed_net, frozenset()), (_mixed_net, frozenset({"l1"})),
                                          (_depthwise_net, frozenset()),
                                          (lambda: _depthwise_net(([0, 1], [], [3])), frozenset()),
                                          (_residual_net, frozenset()), (_scaled_net, frozenset()),
                                          *((lambda post=post: _post_net(post), frozenset())
                                            for post in ("relu6", "prelu", "tanh"))],
                         ids=["split", "shared", "depthwise-gather", "depthwise", "residual", "scaled", "post-relu6",
                              "post-prelu", "post-tanh"])
def test_the_hand_made_architectures_export_exactly_the_lowered_ops(tmp_path, make, shared):
    net = make()
    net.eval()
    net.set_search_mode("finetune")
    arch = net.to_arch()
    expected = [item.op for item in lower_arch(arch, shared)]
    assert differences(expected, _exported_ops(net, arch, tmp_path, shared)) == ([], [])


@pytest.mark.slow
@pytest.mark.parametrize("backbone, space, max_ops", [
    ("digits", "channels", 1), ("vgg16", "kernels", 2),
    ("resnet20", "kernels", 2), ("resnet20", "channels", 1), ("resnet20", "activations", 2),
    ("mobilenetv2_cifar", "kernels", 2),
])
def test_random_architectures_export_exactly_the_lowered_ops(tmp_path, backbone, space, max_ops):
    """Random searched architectures at small widths, the layers SHARED that the host table picks, as export
    does (benchmarks/lowering_equivalence.py runs 20 per backbone and search space)."""
    from export.assembly import shared_layers
    from export.sampling import random_searched

    for seed in range(2):
        net = random_searched(backbone, seed, max_ops=max_ops, keep=(0.05, 0.5), search_space=space,
                              **SMALL.get(backbone, {}))
        arch = net.to_arch()
        shared = shared_layers(arch, _host_table())
        expected = [item.op for item in lower_arch(arch, shared)]
        assert differences(expected, _exported_ops(net, arch, tmp_path, shared)) == ([], [])
