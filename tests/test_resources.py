import pytest
import torch
import torch.nn.functional as F

from profiler.channel_order import LayerChannels, layer_runs
from profiler.errors import FgnasError
from profiler.latency.fit import ConditionModel, LinearFit, OpModel
from profiler.latency.table import LatencyTable
from profiler.lowering import SHARED, SPLIT, MergeOps, pad_elements
from profiler.spec import ConditionKey, ConvSpec, flops, params
from search.backbones import create_backbone
from search.layer import LayerNode, Pool
from search.network import HeadSpec, SearchNetwork
from search.operations import OpSpec
from search.resources import (
    active_channels,
    conv_flops,
    conv_params,
    create_resource,
    gamma_in,
    gamma_out,
    layer_assembly,
)

ON, OFF = [0.5, -0.5], [-0.5, 0.5]
DSIG = 0.19661193  # p(1-p) at p = sigmoid(1): the gate gradient at the initial margin, on or off


@pytest.mark.parametrize("spec", [ConvSpec(8, 8, 6, 10, 3), ConvSpec(7, 7, 4, 9, 5, 2, activation="prelu"),
                                  ConvSpec.depthwise(8, 8, 12, 3, 2, "relu"), ConvSpec(4, 4, 8, 6, 1, groups=2)])
def test_phi_params_and_flops_equal_the_profiler_counts_on_integers(spec):
    assert conv_params(spec, spec.cin, spec.cout) == params(spec)
    assert conv_flops(spec, spec.cin, spec.cout) == flops(spec)


def test_gammas_on_a_small_layer():
    gates = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    assert gamma_out(gates).tolist() == [2.0, 1.0]
    assert gamma_in(gates).item() == 2.0
    assert gamma_in(gates, skip_mask=torch.tensor([0.0, 0.0, 0.0, 1.0])).item() == 3.0  # the skip adds channel 3
    assert active_channels(gates).tolist() == [1.0, 0.0, 1.0, 0.0]


def _tiny_net(l1_op1=(OFF, OFF, ON)) -> SearchNetwork:
    """input 2ch 4x4 -> l1 (3ch: 1x1 relu + 3x3 relu) -> l2 (3ch: 1x1, skip from l1) -> head (4 classes)."""
    l1 = LayerNode("l1", "input", (4, 4), 2, 3, 1, (OpSpec("normal", 1, "relu"), OpSpec("normal", 3, "relu")))
    l2 = LayerNode("l2", "l1", (4, 4), 3, 3, 1, (OpSpec("normal", 1, "none"),), skip="l1")
    net = SearchNetwork([l1, l2], HeadSpec("l2", (4, 4), 3, 4), in_channels=2, input_size=4)
    with torch.no_grad():
        net.layers["l1"].psi.copy_(torch.tensor([[ON, OFF, ON], list(l1_op1)]))
        net.layers["l2"].psi.copy_(torch.tensor([[OFF, ON, OFF]]))
    return net


def test_params_regularizer_value_and_gradient_by_hand():
    net = _tiny_net()
    r = net.soft_resource(create_resource("params"))
    # l1 op0: 2 ch * (1*1*2 + 1) = 6; op1: 1 ch * (3*3*2 + 1) = 19; l2: 1 ch * (1*1*2 alive inputs + 1) = 3;
    # head: l2 alive = h([0,1,0] + [1,0,1]) = 3 channels -> 3*4 + 4 = 16
    assert r.item() == 44.0
    assert net.hard_resource(create_resource("params")) == 44.0
    r.backward()
    # d R / d G: l1 op0 = 3 (own) + 1 (l2's cin) + 4 (head through the skip); op1 = 19 + 1 + 4; l2 = 3 + 4
    g1, g2 = net.layers["l1"].psi.grad, net.layers["l2"].psi.grad
    assert g1[0, :, 0].tolist() == pytest.approx([8 * DSIG] * 3, abs=1e-6)
    assert g1[1, :, 0].tolist() == pytest.approx([24 * DSIG] * 3, abs=1e-6)
    assert g2[0, :, 0].tolist() == pytest.approx([7 * DSIG] * 3, abs=1e-6)
    assert torch.allclose(g1[..., 1], -g1[..., 0])


def test_flops_regularizer_by_hand():
    net = _tiny_net()
    # 2*16 px * (2 ch * 2) + 2*16 * (1 * 18) + 2*16 * (1 * 2) + 2 * 3 * 4
    assert net.soft_resource(create_resource("flops")).item() == 128 + 576 + 64 + 24


def test_a_removed_operation_costs_nothing_but_keeps_its_gradient():
    net = _tiny_net(l1_op1=(OFF, OFF, OFF))
    r = net.soft_resource(create_resource("params"))
    assert r.item() == 6 + 3 + 16
    r.backward()
    assert net.layers["l1"].psi.grad[1, :, 0].tolist() == pytest.approx([24 * DSIG] * 3, abs=1e-6)


def _table(network: dict | None = None) -> LatencyTable:
    def cond(kernel, act, a, b):
        key = ConditionKey(4, 4, kernel, 1, "normal", act)
        return ConditionModel(key, "affine", a, b, 1, 1, 5, 1.0, 0.0, 0.0, LinearFit(a, b, 5, 1.0, 0.0, 0.0)).to_dict()

    ops = {name: OpModel(name, unit, a, b, 5, 0.0, 0.0).to_dict() for name, unit, a, b in
           (("ADD", "output_elements", 0.001, 0.01), ("MEAN", "input_elements", 0.002, 0.02),
            ("FULLY_CONNECTED", "macs", 0.003, 0.04), ("MAX_POOL_2D", "input_elements", 0.004, 0.03),
            ("SPLIT_V", "copies", 0.005, 0.002), ("CONCATENATION", "copies", 0.006, 0.003))}
    doc = {"device": {"name": "hand"}, "ops": ops, "network": network,
           "conditions": [cond(1, "relu", 0.5, 0.1), cond(3, "relu", 0.2, 0.3), cond(1, "none", 1.0, 0.05)]}
    return LatencyTable(doc)


def test_latency_adds_the_tables_in_network_cost_as_the_table_prices_it():
    from profiler.latency.fit import NetworkModel
    from profiler.model_ops import ConvOp, OtherOp

    network = NetworkModel(20.0, 50.0, 0.0001, 8, 0.1, 0.01, 0.02)  # per MB; 4x4 maps are a few hundred bytes
    plain, inside = create_resource("latency", _table()), create_resource("latency", _table(network.to_dict()))
    spec = ConvSpec(4, 4, 6, 10, 3, activation="relu")
    cout = torch.tensor(10.0, requires_grad=True)
    extra = inside.conv(spec, torch.tensor(6.0), cout) - plain.conv(spec, 6, 10)
    op = ConvOp(0, ("CONV_2D",), spec)
    assert extra.item() == pytest.approx(network.extra_ms(op.weights, op.activations), rel=1e-5)
    assert extra.item() == pytest.approx(_table(network.to_dict()).network_ms([op]), rel=1e-5)
    extra.backward()
    # d/dcout: weights 9 * 6 values and activations 4 * 4 values per output channel, 4 bytes each
    assert cout.grad.item() == pytest.approx(0.2 * 2 * 16 * 6 * 9 / 1e6 + (20.0 * 9 * 6 + 50.0 * 16) * 4 / 1e6,
                                             rel=1e-4)
    add = OtherOp(1, "ADD", ((1, 4, 4, 10), (1, 4, 4, 10)), ((1, 4, 4, 10),))
    assert inside.add(4, 4, 10) - plain.add(4, 4, 10) == pytest.approx(network.extra_ms(0, add.activations))


def test_latency_regularizer_by_hand_through_the_table():
    table = _table()
    net = _tiny_net()
    latency = create_resource("latency", table)
    # convs: a * MFLOPs + b with the FLOPs above; l2 and its skip (l2 keeps {1}, the skip {0, 2}) share no channel:
    # no ADD, a CONCATENATION of 2 pieces (32 copies) 0.195; MEAN over 48; FC over 12 MACs;
    # l1's assembly (op0 keeps {0, 2}, op1 {2}): split = ADD over channel 2 (16 el) 0.026 + op0's SPLIT_V in 2
    # pieces (32 copies) 0.162 + CONCATENATION of {0} and {2} (2 pieces, 32 copies) 0.195 = 0.383; shared = op1
    # computing both alive channels (one more 3x3 channel, 576 FLOPs at 0.2 ms/MFLOP) + ADD over 32 el (0.042): wins
    merge = 0.2 * 576e-6 + 0.042
    expected = (0.5 * 128e-6 + 0.1) + (0.2 * 576e-6 + 0.3) + (1.0 * 64e-6 + 0.05) + 0.195 + 0.116 + 0.076 + merge
    r = net.soft_resource(latency)
    assert r.item() == pytest.approx(expected, rel=1e-6)
    assert net.hard_resource(latency) == pytest.approx(expected, rel=1e-6)
    r.backward()
    # l2's gates: d/dcout of its conv (1.0 ms/MFLOP * 2*16*2 FLOPs) + MEAN (16 el) + FC (4 MACs); no ADD term: the
    # overlap surrogate only prices a layer that already adds (search.resources.LatencyResource.merge_surrogate)
    per_channel = 1.0 * 64e-6 + 0.002 * 16 + 0.003 * 4
    assert net.layers["l2"].psi.grad[0, 0, 0].item() == pytest.approx(per_channel * DSIG, rel=1e-5)
    arch = net.to_arch()
    convs = sum(table.predict_ms(ConvSpec.from_dict(op["spec"])) for layer in arch["layers"] for op in layer["ops"]
                if op["spec"])
    assert convs + 0.195 + 0.116 + 0.076 + merge == pytest.approx(expected, rel=1e-6)


def merge_ops(keeps) -> MergeOps:
    """The runs export writes a lone layer in (no skip, no reader downstream: one run per set of producers) from its
    operations' channel masks (one row per operation)."""
    rows = torch.as_tensor(keeps).tolist()
    kept = tuple(tuple(c for c, on in enumerate(row) if on) for row in rows)
    layer = LayerChannels("l", "input", None, kept, (False,) * len(rows), tuple(sorted(set().union(*kept))))
    return MergeOps.of(layer_runs([layer], 1, lambda *_: False)["l"])


def test_a_lone_layer_is_assembled_in_one_run_per_set_of_operations_keeping_channels():
    keeps = torch.tensor([[1, 1, 0, 1, 0, 0, 1], [0, 1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0, 0.0]])
    # owner sets: c0 and c6 {0}, c1 {0,1}, c2 {1}, c3 {0,1,2}, c4 {2}, c5 none: 1 ADD for c1, 2 for c3; op0 (4
    # channels) and op1 (3) feed 3 runs each, op2 (2) feeds 2; five runs (six channels) concatenated
    assert _sizes(merge_ops(keeps)) == ((1, 1, 1), (3, 3, 2), 5, (4, 3, 2), 6)
    assert merge_ops(keeps).overlap == 3 == keeps.sum() - active_channels(keeps).sum()
    assert _sizes(merge_ops(torch.tensor([[1, 1, 0], [0, 0, 1.0]]))) == ((), (), 2, (), 3)  # disjoint: a concat only
    assert merge_ops(torch.tensor([[1, 1, 1], [0, 0, 0.0]])) == MergeOps(((frozenset({0}), 3),))
    assert _sizes(merge_ops(torch.tensor([[1, 1, 1], [0, 0, 0.0]]))) == ((), (), 0, (), 0)  # one op: nothing to do
    assert _sizes(merge_ops(torch.tensor([[1, 1], [1, 1.0]]))) == ((2,), (), 0, (), 0)  # the same channels: one ADD


def _sizes(ops: MergeOps) -> tuple:
    return ops.add_channels, ops.split_pieces, ops.concat_pieces, ops.split_channels, ops.concat_channels


def test_merge_cost_and_its_surrogate_gradient_by_hand():
    latency = create_resource("latency", _table())
    gates = torch.tensor([[1, 0, 1], [0, 0, 1.0]], requires_grad=True)
    ops = merge_ops(gates)
    assert latency.merge(4, 4, ops) == pytest.approx(0.026 + 0.162 + 0.195)
    assert create_resource("flops").merge(4, 4, ops) == 0.0
    latency.merge_surrogate(4, 4, gates, ops).backward()
    # ADD 0.001/el times 16 pixels where another op keeps the channel; pieces (SPLIT_V, CONCATENATION) are counts
    assert torch.allclose(gates.grad, torch.tensor([[0, 0, 1], [1, 0, 1.0]]) * 0.016)


def test_a_layer_is_assembled_the_cheaper_way_and_never_shared_across_a_skip():
    latency = create_resource("latency", _table())
    gates = torch.tensor([[1, 0, 1], [0, 0, 1.0]])
    specs = [ConvSpec(4, 4, 2, 3, 1, activation="relu"), ConvSpec(4, 4, 2, 3, 3, activation="relu")]
    split = merge_ops(gates)
    kind, cost = layer_assembly(latency, specs, torch.tensor(2.0), gates, 4, 4, True, split)
    assert kind == SHARED and float(cost) == pytest.approx(0.2 * 576e-6 + 0.042)
    kind, cost = layer_assembly(latency, specs, torch.tensor(2.0), gates, 4, 4, False, split)
    assert kind == SPLIT and float(cost) == pytest.approx(0.383)
    # the same channels in both: one ADD either way, nothing to split, so split
    same = torch.ones(2, 3)
    kind, cost = layer_assembly(latency, specs, torch.tensor(2.0), same, 4, 4, True, merge_ops(same))
    assert kind == SPLIT and float(cost) == pytest.approx(0.001 * 48 + 0.01)
    assert layer_assembly(create_resource("flops"), specs, 2, gates, 4, 4, True, split) == (SPLIT, 0.0)


def test_stride_two_convs_on_even_sizes_pay_exports_explicit_pad():
    assert pad_elements(ConvSpec(4, 4, 3, 5, 3, 2), 3) == 6 * 6 * 3  # k3: one pixel each side
    assert pad_elements(ConvSpec(5, 5, 3, 5, 3, 2), 3) == 0.0  # odd size: TF's SAME pads as PyTorch does
    assert pad_elements(ConvSpec(4, 4, 3, 5, 1, 2), 3) == 0.0 and pad_elements(ConvSpec(4, 4, 3, 5, 5, 1), 3) == 0.0
    doc = _table()._doc
    key = ConditionKey(4, 4, 3, 2, "normal", "relu")
    stride2 = ConditionModel(key, "affine", 0.2, 0.3, 1, 1, 5, 1.0, 0.0, 0.0, LinearFit(0.2, 0.3, 5, 1.0, 0.0, 0.0))
    doc = {**doc, "conditions": [*doc["conditions"], stride2.to_dict()]}
    pad = OpModel("PAD", "copies", 0.0001, 0.005, 5, 0.0, 0.0, 0.00005).to_dict()
    l1 = LayerNode("l1", "input", (4, 4), 2, 3, 2, (OpSpec("normal", 3, "relu"),))
    net = SearchNetwork([l1], HeadSpec("l1", (2, 2), 3, 4), in_channels=2, input_size=4)
    latency = create_resource("latency", LatencyTable({**doc, "ops": {**doc["ops"], "PAD": pad}}))
    without = create_resource("latency", LatencyTable(doc))
    # the 2-channel input padded to 6x6: 36 copies (pixels) of 72 elements -> 0.0001 * 36 + 0.00005 * 72 + 0.005
    assert net.hard_resource(latency) - net.hard_resource(without) == pytest.approx(0.0122)


def test_published_tables_without_split_or_concat_models_price_the_adds_and_name_the_rest():
    doc = _table()._doc
    table = LatencyTable({**doc, "ops": {k: v for k, v in doc["ops"].items() if k not in ("SPLIT_V", "CONCATENATION")}})
    latency = create_resource("latency", table)
    assert latency.merge(4, 4, merge_ops([[1, 1], [1, 0]])) == pytest.approx(0.026)  # one ADD, a split, a concat
    assert latency.unpriced_merge_ops == ["SPLIT_V", "CONCATENATION"]


def test_max_pool_is_priced_on_its_input_elements():
    l1 = LayerNode("l1", "input", (4, 4), 2, 3, 1, (OpSpec("normal", 1, "relu"),), pool=Pool())
    net = SearchNetwork([l1], HeadSpec("l1", (2, 2), 3, 4), in_channels=2, input_size=4)
    assert net.nonconv_ops() == ["FULLY_CONNECTED", "MAX_POOL_2D", "MEAN"]
    # conv 2*16*3*2 FLOPs; pool over 4*4*3 inputs; MEAN over 2*2*3; FC 3*4 MACs
    expected = (0.5 * 192e-6 + 0.1) + (0.004 * 48 + 0.03) + (0.002 * 12 + 0.02) + (0.003 * 12 + 0.04)
    assert net.hard_resource(create_resource("latency", _table())) == pytest.approx(expected, rel=1e-6)


def test_split_and_concat_are_priced_on_their_copies_and_the_elements_they_move():
    doc = _table()._doc
    copies = {"unit": "copies", "a_ms_per_unit": 0.001, "c_ms_per_element": 0.0001, "b_ms": 0.002, "n": 5, "mape": 0.0,
              "cv_mape": 0.0}
    latency = create_resource("latency", LatencyTable({**doc, "ops": {**doc["ops"], "SPLIT_V": copies,
                                                                     "CONCATENATION": copies}}))
    # on 4x4: op0 keeps 5 channels, op1 4, two shared: op0 and op1 each split in 2 pieces, one ADD of 2 channels,
    # 3 pieces (7 channels) concatenated
    ops = merge_ops([[1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 1]])
    splits = (0.001 * 2 * 16 + 0.0001 * 5 * 16 + 0.002) + (0.001 * 2 * 16 + 0.0001 * 4 * 16 + 0.002)
    concat = 0.001 * 3 * 16 + 0.0001 * 7 * 16 + 0.002
    assert latency.merge(4, 4, ops) == pytest.approx(splits + (0.001 * 2 * 16 + 0.01) + concat)


def test_a_network_pays_the_invoke_overhead_once_and_no_op_goes_below_zero():
    l1 = LayerNode("l1", "input", (4, 4), 2, 3, 1, (OpSpec("normal", 1, "relu"),), pool=Pool())
    net = SearchNetwork([l1], HeadSpec("l1", (2, 2), 3, 4), in_channels=2, input_size=4)
    doc = _table()._doc
    latency = create_resource("latency", LatencyTable({**doc, "invoke_overhead_ms": 0.025}))
    # as test_max_pool_is_priced_on_its_input_elements, each op less 0.025 (the conv, 0.1001 ms, too), MEAN's
    # 0.044 ms less 0.025 and the model's 0.025 once
    ops = [0.5 * 192e-6 + 0.1, 0.004 * 48 + 0.03, 0.002 * 12 + 0.02, 0.003 * 12 + 0.04]
    assert net.hard_resource(latency) == pytest.approx(sum(ops) - 4 * 0.025 + 0.025, rel=1e-6)
    cheap = create_resource("latency", LatencyTable({**doc, "invoke_overhead_ms": 1.0}))
    assert cheap.add(1, 1, 1) == 0.0 and cheap.base() == 1.0
    soft = cheap.conv(ConvSpec(4, 4, 2, 3, 1, activation="relu"), torch.tensor(2.0), torch.tensor(3.0,
                                                                                                requires_grad=True))
    assert float(soft) == 0.0 and soft.requires_grad


def test_latency_needs_a_table_and_unknown_resources_are_refused():
    with pytest.raises(FgnasError, match="latency table"):
        create_resource("latency")
    with pytest.raises(FgnasError, match="unknown resource"):
        create_resource("energy")


# ---- the hard-gated network against its physically sliced equivalent ------------------------------------------

def _sliced_forward(arch: dict, sd: dict, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Rebuild the pruned network with plain torch ops (BN folded), run it, count its params and FLOPs."""
    n_params = n_flops = 0
    outputs = {"input": (x, list(range(x.shape[1])))}
    acts = {"none": lambda t, w: t, "relu": lambda t, w: F.relu(t), "tanh": lambda t, w: torch.tanh(t),
            "relu6": lambda t, w: F.relu6(t), "prelu": lambda t, w: F.prelu(t, w)}
    for layer in arch["layers"]:
        xin, idx_in = outputs[layer["input"]]
        assert idx_in == layer["active_in"]
        pos = {c: i for i, c in enumerate(layer["active_out"])}
        y = None
        for i, op in enumerate(layer["ops"]):
            keep = op["keep"]
            if not keep:
                continue
            pre = f"layers.{layer['name']}.ops.{i}."
            w = sd[pre + "conv.weight"][keep]
            if op["conv_type"] == "depthwise":
                inp, groups = xin[:, [idx_in.index(c) for c in keep]], len(keep)
            else:
                inp, groups, w = xin, 1, w[:, idx_in]
            scale = sd[pre + "bn.weight"][keep] / torch.sqrt(sd[pre + "bn.running_var"][keep] + 1e-5)
            w = w * scale.view(-1, 1, 1, 1)
            b = sd[pre + "bn.bias"][keep] - sd[pre + "bn.running_mean"][keep] * scale
            slope = sd[pre + "act.weight"][keep] if op["activation"] == "prelu" else None
            o = acts[op["activation"]](F.conv2d(inp, w, b, layer["stride"], op["kernel"] // 2, groups=groups), slope)
            n_params += w.numel() + b.numel() + (0 if slope is None else slope.numel())
            n_flops += 2 * o[0].numel() * w.shape[1] * op["kernel"] ** 2
            if y is None:
                y = torch.zeros(o.shape[0], len(pos), *o.shape[2:])
            y[:, [pos[c] for c in keep]] += layer["scale"] * o
        if layer["skip"]:
            s, idx_s = outputs[layer["skip"]]
            y[:, [pos[c] for c in idx_s]] += s
        y = acts[layer["post_activation"]](y, None)
        if layer["pool"]:
            y = F.max_pool2d(y, layer["pool"]["kernel"], layer["pool"]["stride"])
        outputs[layer["name"]] = (y, layer["active_out"])
    feats, idx = outputs[arch["head"]["input"]]
    assert idx == arch["head"]["active_in"]
    fc_w = sd["head.fc.weight"][:, idx]
    n_params += fc_w.numel() + sd["head.fc.bias"].numel()
    n_flops += 2 * fc_w.numel()
    return F.linear(feats.mean(dim=(2, 3)), fc_w, sd["head.fc.bias"]), n_params, n_flops


@pytest.mark.parametrize("name,kwargs", [
    ("digits", {"search_space": "k=1,3;act=relu,prelu"}),
    ("resnet20", {"search_space": "kernels", "width": 0.5, "reduce_skip": True}),
    ("vgg16", {"search_space": "kernels", "width": 0.125}),
    ("mobilenetv2_cifar", {"search_space": "kernels35", "width": 0.25}),
])
def test_hard_gated_network_equals_its_physically_sliced_equivalent(name, kwargs):
    torch.manual_seed(1)
    net = create_backbone(name, **kwargs)
    with torch.no_grad():
        for p in net.gate_parameters():
            p.copy_(torch.randn_like(p) + torch.tensor([0.3, 0.0]))  # about 60% of the gates on
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.data.uniform_(-0.3, 0.3)
    net.eval()
    net.set_search_mode("finetune")
    arch = net.to_arch()
    assert any(len(layer["active_out"]) < layer["cout"] for layer in arch["layers"])
    x = torch.randn(2, net.in_channels, net.input_size, net.input_size)
    logits, n_params, n_flops = _sliced_forward(arch, net.state_dict(), x)
    assert torch.allclose(net(x), logits, atol=1e-4, rtol=1e-4)
    assert net.hard_resource(create_resource("params")) == n_params == arch["predicted"]["params"]
    assert net.hard_resource(create_resource("flops")) == n_flops == arch["predicted"]["flops"]


def test_the_per_layer_summary_includes_the_assembly_export_builds():
    from search.summary import layer_rows

    rows = layer_rows(_tiny_net().to_arch(), _table())
    # l1: its two convs, then shared assembly (op1 on both alive channels + a 32-element ADD), as priced above
    convs = (0.5 * 128e-6 + 0.1) + (0.2 * 576e-6 + 0.3)
    assert rows[0]["latency_ms"] == pytest.approx(convs + 0.2 * 576e-6 + 0.042)
    # l2: its conv on channel 1, concatenated with the skip's channels 0 and 2 (2 pieces of 16 pixels)
    assert rows[1]["latency_ms"] == pytest.approx(1.0 * 64e-6 + 0.05 + 0.006 * 32 + 0.003)


def test_depthwise_operations_reading_part_of_their_input_pay_a_slice_or_a_gather():
    doc = dict(_table()._doc)
    line = LinearFit(0.1, 0.01, 5, 1.0, 0.0, 0.0)
    doc["conditions"] = doc["conditions"] + [
        ConditionModel(ConditionKey(4, 4, k, 1, "depthwise", "relu"), "affine", 0.1, 0.01, 1, 1, 5, 1.0, 0.0, 0.0,
                       line).to_dict() for k in (1, 3, 5)]
    copies = OpModel("STRIDED_SLICE", "copies", 0.001, 0.002, 5, 0.0, 0.0, 0.0001).to_dict()
    gather = OpModel("GATHER", "output_elements", 0.0005, 0.003, 5, 0.0, 0.0).to_dict()
    latency = create_resource("latency", LatencyTable({**doc, "ops": {**doc["ops"], "STRIDED_SLICE": copies,
                                                                     "GATHER": gather}}))
    assert latency.select(4, 4, 3, contiguous=True) == pytest.approx(0.001 * 16 + 0.0001 * 48 + 0.002)
    assert latency.select(4, 4, 3, contiguous=False) == pytest.approx(0.0005 * 48 + 0.003)
    assert create_resource("flops").select(4, 4, 3, contiguous=False) == 0.0
    dw = LayerNode("dw", "input", (4, 4), 3, 3, 1, tuple(OpSpec("depthwise", k, "relu") for k in (1, 3, 5)))
    net = SearchNetwork([dw], HeadSpec("dw", (4, 4), 3, 4), in_channels=3, input_size=4)
    with torch.no_grad():
        net.layers["dw"].psi.copy_(torch.tensor([[ON, ON, ON], [ON, ON, OFF], [ON, OFF, OFF]]))
    without = create_resource("latency", LatencyTable(doc))
    # the first op reads all 3 channels; the other two read 2 and 1: two slices
    assert net.hard_resource(latency) - net.hard_resource(without) == pytest.approx(
        latency.select(4, 4, 2, True) + latency.select(4, 4, 1, True), rel=1e-6)
