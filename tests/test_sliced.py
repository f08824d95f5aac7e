"""The sliced fine-tune network (search/sliced.py) against the masked SearchNetwork it replaces: same forward (eval and
batch statistics), same gradients and, after SGD steps, the same state on the kept entries once written back."""
import copy

import pytest
import torch
import torch.nn.functional as F

from export.sampling import random_searched
from search.sliced import (
    NetShapedOptimizer,
    SlicedNetwork,
    open_index,
    optimizer_state_from_net,
    optimizer_state_to_net,
    write_back,
)
from search.train import SearchConfig, make_weight_optimizer

# (backbone, search space, create_backbone options): a residual and a plain backbone (digits has a depthwise layer),
# one operation per layer and three (kernels 1/3/5); PReLU and tanh operations; MobileNetV2's depthwise layers with
# two kernels each, reading part of their input (its head's dropout off: the sliced head draws its mask over fewer
# channels); all small enough for a fast test
NETWORKS = [
    ("resnet20", "channels", {"width": 0.25, "input_size": 16}),
    ("resnet20", "kernels", {"width": 0.25, "input_size": 16}),
    ("digits", "channels", {"width": 0.5, "input_size": 16}),
    ("digits", "kernels", {"width": 0.5, "input_size": 16}),
    ("digits", "activations", {"width": 0.5, "input_size": 16}),
    ("mobilenetv2_cifar", "kernels35", {"width": 0.25, "input_size": 16, "dropout": 0.0}),
]
IDS = [f"{b}-{s}" for b, s, _ in NETWORKS]
TOL = 1e-5


def _net(backbone: str, space: str, options: dict, seed: int = 0):
    """Random gates and BN statistics (export.sampling), in train mode as the fine-tune runs it."""
    net = random_searched(backbone, seed, search_space=space, **options)
    net.train()
    return net


def _batch(net, seed: int, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, net.in_channels, net.input_size, net.input_size, generator=g)
    return x, torch.randint(net.head_spec.num_classes, (n,), generator=g)


def _kept_mask(full: torch.Tensor, index) -> torch.Tensor:
    mask = torch.zeros_like(full, dtype=torch.bool)
    mask[open_index(index)] = True
    return mask


def _assert_close(got: dict, expected: dict, tol: float = TOL) -> None:
    """Equal to `tol` relative to each tensor's largest entry (at least 1): the deep MobileNetV2 on 16x16 images has
    gradients up to 15, whose float32 rounding alone is above 1e-5."""
    assert got.keys() == expected.keys()
    for key in got:
        scale = max(1.0, float(expected[key].double().abs().max()))
        torch.testing.assert_close(got[key].double(), expected[key].double(), atol=tol * scale, rtol=tol,
                                   msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.parametrize("backbone,space,options", NETWORKS, ids=IDS)
def test_the_sliced_forward_equals_the_masked_one_in_eval_and_train_mode(backbone, space, options):
    net = _net(backbone, space, options)
    sliced = SlicedNetwork(net)
    x, _ = _batch(net, 1)
    for train in (False, True):
        net.train(train)
        sliced.train(train)
        torch.testing.assert_close(sliced(x), net(x), atol=TOL, rtol=TOL)
    # the train-mode forward updated both networks' BN running statistics alike on the kept channels
    _assert_close(dict(sliced.state_dict()), sliced.kept(net.state_dict()))


@pytest.mark.parametrize("backbone,space,options", NETWORKS, ids=IDS)
def test_the_kept_weights_get_the_masked_networks_gradients(backbone, space, options):
    net = _net(backbone, space, options)
    sliced = SlicedNetwork(net)
    x, y = _batch(net, 2)
    F.cross_entropy(net(x), y).backward()
    F.cross_entropy(sliced(x), y).backward()
    grads = {name: p.grad for name, p in sliced.named_parameters()}
    assert all(g is not None for g in grads.values())
    _assert_close(grads, sliced.kept({name: p.grad for name, p in net.named_parameters() if p.grad is not None}))


@pytest.mark.parametrize("backbone,space,options", NETWORKS, ids=IDS)
def test_sgd_on_the_sliced_network_written_back_equals_sgd_on_the_masked_one(backbone, space, options):
    # in float64: in float32 the two networks' rounding differences (1e-7) cross a ReLU kink now and then and the
    # trajectories part by 1e-4 within three steps, while in float64 they agree to 1e-11 (MobileNetV2) or better
    net = _net(backbone, space, options).double()
    masked = copy.deepcopy(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sliced = SlicedNetwork(net)
    config = SearchConfig(target="1ms", lr=0.05, momentum=0.9, weight_decay=5e-3)  # decay large enough to matter
    opt_sliced = make_weight_optimizer(sliced.parameters(), config)
    opt_masked = make_weight_optimizer(masked.weight_parameters(), config)
    for step in range(3):
        x, y = _batch(net, 10 + step)
        x = x.double()
        for model, opt in ((sliced, opt_sliced), (masked, opt_masked)):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
    write_back(sliced, net)
    after, trained = net.state_dict(), masked.state_dict()
    _assert_close(sliced.kept(after), sliced.kept(trained), tol=1e-9)
    for key, value in after.items():  # pruned entries (and pruned operations, and the gates) are untouched
        keep = _kept_mask(value, sliced.index[key]) if key in sliced.index else torch.zeros_like(value, dtype=bool)
        assert torch.equal(value[~keep], before[key][~keep]), key
        assert not torch.equal(value[keep], before[key][keep]) or not keep.any(), key  # the kept entries trained
    # the momentum buffers agree too, read either way through the checkpoint's SearchNetwork-shaped form
    momentum = {name: opt_sliced.state[p]["momentum_buffer"] for name, p in sliced.named_parameters()}
    from_masked = optimizer_state_from_net(opt_masked.state_dict(), sliced, net)
    _assert_close({name: from_masked["state"][i]["momentum_buffer"] for i, name in enumerate(momentum)}, momentum,
                  tol=1e-9)


def test_the_optimizer_state_round_trips_through_the_search_networks_shapes():
    net = _net("digits", "kernels", {"width": 0.5, "input_size": 16})
    sliced = SlicedNetwork(net)
    opt = make_weight_optimizer(sliced.parameters(), SearchConfig(target="1ms"))
    x, y = _batch(net, 3)
    F.cross_entropy(sliced(x), y).backward()
    opt.step()
    saved = NetShapedOptimizer(opt, sliced, net).state_dict()
    # the masked fine-tune's optimizer loads it: every weight parameter of the SearchNetwork, in its shapes
    masked = make_weight_optimizer(net.weight_parameters(), SearchConfig(target="1ms"))
    masked.load_state_dict(saved)
    fresh = make_weight_optimizer(sliced.parameters(), SearchConfig(target="1ms"))
    NetShapedOptimizer(fresh, sliced, net).load_state_dict(saved)
    for p in sliced.parameters():
        assert torch.equal(fresh.state[p]["momentum_buffer"], opt.state[p]["momentum_buffer"])
    assert optimizer_state_to_net(optimizer_state_from_net(saved, sliced, net), sliced, net)["state"].keys() == \
        saved["state"].keys()


def test_writing_back_an_untrained_slice_changes_nothing():
    net = _net("resnet20", "kernels", {"width": 0.25, "input_size": 16})
    before = copy.deepcopy(net.state_dict())
    write_back(SlicedNetwork(net), net)
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_the_sliced_network_computes_only_the_kept_channels():
    net = _net("resnet20", "channels", {"width": 0.25, "input_size": 16})
    sliced = SlicedNetwork(net)
    for row in net.layer_summary():
        layer = sliced.layers[row["name"]]
        assert layer.width == row["active_out"]
        assert [op.conv.out_channels for op in layer.ops.values()] == [n for n in row["ops"].values() if n]
        assert all(op.conv.in_channels in (row["active_in"], op.conv.out_channels) for op in layer.ops.values())
    assert sliced.head.fc.in_features == net.layer_summary()[-1]["active_out"]
    assert sum(p.numel() for p in sliced.parameters()) < sum(p.numel() for p in net.weight_parameters())


def test_only_a_network_with_fixed_gates_is_sliced():
    net = _net("digits", "channels", {"width": 0.5, "input_size": 16})
    net.set_search_mode("search")
    with pytest.raises(ValueError, match="finetune mode"):
        SlicedNetwork(net)


def test_bf16_autocast_and_channels_last_train_as_the_masked_network_does():
    net = _net("resnet20", "kernels", {"width": 0.25, "input_size": 16}).to(memory_format=torch.channels_last)
    sliced = SlicedNetwork(net).to(memory_format=torch.channels_last)
    x, y = _batch(net, 4)
    x = x.contiguous(memory_format=torch.channels_last)
    outputs = []
    for model in (net, sliced):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        outputs.append(logits.float())
    torch.testing.assert_close(outputs[1], outputs[0], atol=0.05, rtol=0.05)  # bf16's 8-bit mantissa
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in sliced.parameters())
