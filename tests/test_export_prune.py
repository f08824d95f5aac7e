"""Physical pruning: the plain pruned module equals the gated network; channel orders avoid gathers."""
import pytest
import torch

from export.plan import SKIP
from export.prune import prune
from export.sampling import random_searched
from export.torch_model import PrunedNetwork
from profiler.channel_order import gray_ranks
from profiler.errors import FgnasError
from profiler.lowering import shareable
from search.arch import Arch
from search.layer import LayerNode
from search.network import HeadSpec, SearchNetwork
from search.operations import OpSpec

BACKBONES = [
    ("digits", {"search_space": "table2"}),
    ("resnet20", {"search_space": "k=1,7,11;act=relu,prelu,tanh", "width": 0.25, "reduce_skip": True}),
    ("vgg16", {"search_space": "table2", "width": 0.0625}),
    ("mobilenetv2_cifar", {"search_space": "k=3,5,9;act=relu6,tanh", "width": 0.25}),
    ("mobilenetv2", {"search_space": "kernels35", "width": 0.25, "input_size": 64}),
    ("vgg19", {"search_space": "channels", "width": 0.125}),
    ("resnet18", {"search_space": "kernels", "width": 0.125, "reduce_skip": True}),
]


def _check_equal(net, plan, batch=3):
    x = torch.randn(batch, net.in_channels, net.input_size, net.input_size)
    with torch.no_grad():
        ref, out = net(x), PrunedNetwork(plan)(x)
    assert torch.allclose(ref, out, atol=1e-5 * ref.abs().max().item(), rtol=0)


def test_gray_rank_orders_two_bits_so_that_each_bit_set_is_contiguous():
    # channels 0..3 in {2, 3} and {1, 2}: bits 00, 01, 11, 10
    assert gray_ranks([0, 1, 2, 3], [{2, 3}, {1, 2}]) == {0: 0, 1: 1, 2: 2, 3: 3}
    assert gray_ranks([5], [{5}, set(), set()]) == {5: 7}  # bits 100
    assert gray_ranks([0, 1], []) == {0: 0, 1: 0}


@pytest.mark.parametrize("name,kwargs", BACKBONES, ids=[b[0] for b in BACKBONES])
def test_pruned_module_equals_the_gated_network_in_eval_mode(name, kwargs):
    for seed in (0, 1):
        net = random_searched(name, seed, **kwargs)
        arch = net.to_arch()
        plan = prune(arch, net.state_dict())
        _check_equal(net, plan)
        for layer, spec in zip(plan.layers, arch["layers"]):
            assert sorted(layer.order) == spec["active_out"]
            assert [op.cout for op in layer.ops] == [len(op["keep"]) for op in spec["ops"] if op["keep"]]


def _two_op_layer_net():
    ops = (OpSpec("normal", 3, "relu"), OpSpec("normal", 5, "tanh"))
    nodes = [LayerNode("a", "input", (8, 8), 3, 6, 1, (OpSpec("normal", 1, "relu"),)),
             LayerNode("b", "a", (8, 8), 6, 6, 1, ops, skip="a")]
    net = SearchNetwork(nodes, HeadSpec("b", (8, 8), 6, 4), in_channels=3, input_size=8)
    on = {"a": [[1, 1, 0, 1, 1, 0]], "b": [[1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 0, 1]]}
    with torch.no_grad():
        for name, gates in on.items():
            g = torch.tensor(gates, dtype=torch.float32)
            net.layers[name].psi[..., 0] = g * 2 - 1
            net.layers[name].psi[..., 1] = 0
    net.eval()
    net.set_search_mode("finetune")
    return net


def test_overlapping_operations_and_a_skip_assemble_by_split_add_concat():
    net = _two_op_layer_net()
    plan = prune(net.to_arch(), net.state_dict())
    a, b = plan.layers
    assert a.order == (0, 1, 3, 4) and len(a.runs) == 1 and a.ops[0].splits == (4,)
    # skip a = [0, 1, 3, 4] fixes the first runs: {op0, skip} 0 | {op0, op1, skip} 1 | {op1, skip} 3 | {skip} 4,
    # then the channels the skip lacks: {op0, op1} 2, {op1} 5
    assert b.order == (0, 1, 3, 4, 2, 5)
    assert b.skip_splits == (1, 1, 1, 1)
    assert b.ops[0].splits == (1, 1, 1) and b.ops[1].splits == (1, 1, 1, 1)
    assert [sorted(p.op for p in run) for run in b.runs] == [[SKIP, 0], [SKIP, 0, 1], [SKIP, 1], [SKIP], [0, 1], [1]]
    assert b.ops[1].out_scale == 0.5 and b.ops[0].out_scale == 1.0  # 1/M folds through relu, not through tanh
    _check_equal(net, plan)


def test_two_depthwise_operations_read_contiguous_slices_of_their_input():
    nodes = [LayerNode("pw", "input", (8, 8), 3, 8, 1, (OpSpec("normal", 1, "relu6"),)),
             LayerNode("dw", "pw", (8, 8), 8, 8, 1, (OpSpec("depthwise", 3, "relu6"), OpSpec("depthwise", 5, "relu6")))]
    net = SearchNetwork(nodes, HeadSpec("dw", (8, 8), 8, 2), in_channels=3, input_size=8)
    with torch.no_grad():
        net.layers["pw"].psi[..., 0] = 1.0
        net.layers["dw"].psi[..., 0] = torch.tensor([[1, -1, 1, 1, -1, 1, -1, -1], [-1, 1, 1, -1, -1, 1, 1, -1.0]])
        net.layers["dw"].psi[..., 1] = 0.0
    net.eval()
    net.set_search_mode("finetune")
    plan = prune(net.to_arch(), net.state_dict())
    assert [op.select.kind for op in plan.layers[1].ops] == ["slice", "slice"]
    assert plan.gathers() == []
    # the 1/M average is left to the head (nothing adds dw's output unscaled), so relu6 needs no MUL
    assert [op.out_scale for op in plan.layers[1].ops] == [1.0, 1.0]
    _check_equal(net, plan)


def test_weights_of_another_shape_are_refused_naming_the_tensor():
    net = _two_op_layer_net()
    sd = net.state_dict()
    sd["layers.b.ops.1.conv.weight"] = torch.zeros(6, 6, 3, 3)
    with pytest.raises(FgnasError, match="layers.b.ops.1.conv.weight has shape"):
        prune(net.to_arch(), sd)
    del sd["head.fc.bias"]
    with pytest.raises(FgnasError, match="no tensor"):
        prune(net.to_arch(), {k: v for k, v in net.state_dict().items() if k != "head.fc.bias"})


def test_a_residual_stream_is_ordered_where_it_starts_so_the_adding_layer_splits_the_skip_into_few_runs():
    nodes = [LayerNode("a", "input", (8, 8), 3, 6, 1, (OpSpec("normal", 1, "relu"),)),
             LayerNode("b", "a", (8, 8), 6, 6, 1, (OpSpec("normal", 3, "relu"), OpSpec("normal", 5, "relu")),
                       skip="a")]
    net = SearchNetwork(nodes, HeadSpec("b", (8, 8), 6, 4), in_channels=3, input_size=8)
    with torch.no_grad():
        net.layers["a"].psi[..., 0] = 1.0
        net.layers["b"].psi[..., 0] = torch.tensor([[1, -1, 1, -1, 1, -1], [-1, -1, 1, 1, -1, -1.0]])
        net.layers["b"].psi[..., 1] = 0.0
    net.eval()
    net.set_search_mode("finetune")
    plan = prune(net.to_arch(), net.state_dict())
    a, b = plan.layers
    # b keeps {0, 2, 4} by op0 and {2, 3} by op1: a orders its channels op0-only, both, op1-only, neither
    # (descending Gray rank), so b's skip runs are 2 + 1 + 1 + 2 channels: 4 ADDs, where index order needed 6 runs
    # and 5 ADDs
    assert a.order == (0, 4, 2, 3, 1, 5)
    assert b.skip_splits == (2, 1, 1, 2)
    assert sum(len(run) - 1 for run in b.runs) == 4
    _check_equal(net, plan)


@pytest.mark.parametrize("name,kwargs", BACKBONES[:3], ids=[b[0] for b in BACKBONES[:3]])
def test_shared_layers_compute_every_alive_channel_per_operation_and_add_them_at_full_width(name, kwargs):
    net = random_searched(name, 2, **kwargs)
    arch = Arch.from_dict(net.to_arch())
    shared = [layer.name for layer in arch.layers if shareable(layer) and sum(bool(op.keep) for op in layer.ops) > 1]
    assert shared
    plan = prune(arch, net.state_dict(), shared)
    for layer in plan.layers:
        if layer.name in shared:
            assert len(layer.runs) == 1 and len(layer.runs[0]) == len(layer.ops) > 1
            assert all(op.cout == layer.out_channels and op.splits == (layer.out_channels,) for op in layer.ops)
    _check_equal(net, plan)
    skipped = next((layer for layer in arch.layers if not shareable(layer)), None)
    if skipped is not None:
        with pytest.raises(FgnasError, match="cannot be assembled shared"):
            prune(arch, net.state_dict(), [skipped.name])


def test_without_a_table_export_assembles_with_the_searchs_own_table_while_its_content_is_unchanged(tmp_path):
    from export.assembly import assembly_table
    from helpers import synthetic_table_file
    from profiler.latency.table import LatencyTable

    path = synthetic_table_file(tmp_path / "t.json")
    table = LatencyTable.load(path)
    net = random_searched("digits", 0, search_space="kernels")

    def recorded(latency_table):
        return Arch.from_dict(net.to_arch({"latency_table": latency_table}))

    arch = recorded({"path": str(path), "content_hash": table.content_hash})
    assert assembly_table(arch, None).content_hash == table.content_hash
    assert assembly_table(arch, table) is table
    assert assembly_table(recorded({"path": str(path), "content_hash": "sha256:0"}), None) is None
    assert assembly_table(recorded(None), None) is None
    assert assembly_table(recorded({"path": str(tmp_path / "gone.json")}), None) is None
