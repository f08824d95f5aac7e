import pytest
import torch

from profiler.errors import FgnasError
from search.backbones import BACKBONES, create_backbone
from search.resources import create_resource

PARAMS, FLOPS = create_resource("params"), create_resource("flops")


def _macs(net) -> float:
    return net.full_resource(FLOPS) / 2


def test_vgg16_cifar_matches_the_published_313m_macs():
    net = create_backbone("vgg16")
    assert _macs(net) == pytest.approx(313e6, rel=0.01)
    assert len(net.nodes) == 13


def test_resnet20_matches_the_published_41m_macs_and_027m_params():
    net = create_backbone("resnet20")
    assert _macs(net) == pytest.approx(41e6, rel=0.02)
    assert net.full_resource(PARAMS) == pytest.approx(0.27e6, rel=0.02)
    assert sum(n.name.endswith(("conv1", "conv2")) for n in net.nodes) == 18


def test_mobilenetv2_224_matches_the_published_300m_macs_and_3_4m_params():
    net = create_backbone("mobilenetv2")
    assert _macs(net) == pytest.approx(300e6, rel=0.02)
    assert 3.4e6 <= net.full_resource(PARAMS) <= 3.5e6
    assert net(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_runs_in_each_mode_and_its_unpruned_counts_match_torch(name):
    net = create_backbone(name, search_space="kernels", width=0.25, input_size=32, num_classes=7)
    x = torch.randn(2, net.in_channels, 32, 32)
    for mode in ("pretrain", "search", "finetune"):
        net.set_search_mode(mode)
        assert net(x).shape == (2, 7)
    # torch's BN has two parameters per channel where the deployed (folded) conv has one bias
    bn = sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert net.full_resource(PARAMS) == sum(p.numel() for p in net.weight_parameters()) - bn
    assert net.min_resource(FLOPS) < net.hard_resource(FLOPS)


def test_digits_uses_only_the_quick_profiling_conditions():
    net = create_backbone("digits", search_space="kernels")
    conditions = {spec.condition for spec in net.conv_specs()}
    assert {(c.h, c.w) for c in conditions} <= {(32, 32), (16, 16), (8, 8), (4, 4)}
    assert {c.kernel for c in conditions} == {1, 3, 5}
    assert {c.stride for c in conditions} == {1, 2}
    assert {c.conv_type for c in conditions} == {"normal", "depthwise"}
    assert {c.activation for c in conditions} == {"relu"}
    assert any(node.skip for node in net.nodes)
    assert net(torch.randn(3, 1, 32, 32)).shape == (3, 10)


def test_channels_space_is_one_operation_per_layer_and_kernels_space_searches_kernels():
    plain = create_backbone("resnet20", search_space="channels")
    assert all(len(node.ops) == 1 for node in plain.nodes)
    searched = create_backbone("resnet20", search_space="kernels")
    conv3 = [n for n in searched.nodes if n.name.endswith(("conv1", "conv2"))]
    assert all([op.kernel for op in n.ops] == [1, 3, 5] for n in conv3)
    shortcuts = [n for n in searched.nodes if n.name.endswith("shortcut")]
    assert len(shortcuts) == 2 and all(len(n.ops) == 1 for n in shortcuts)


def test_mobilenetv2_searches_kernels_in_depthwise_layers_only():
    net = create_backbone("mobilenetv2_cifar", search_space="kernels35")
    for node in net.nodes:
        expected = [3, 5] if node.name.endswith("_dw") else [node.ops[0].kernel]
        assert [op.kernel for op in node.ops] == expected
    assert sum(node.skip is not None for node in net.nodes) == 10


def test_backbone_args_rebuild_the_same_network():
    net = create_backbone("resnet20", search_space="kernels", width=0.5, reduce_skip=True)
    args = dict(net.backbone_args)
    assert args["search_space"] == "kernels" and args["width"] == 0.5 and args["num_classes"] == 10
    again = create_backbone(net.backbone, **args)
    assert again.nodes == net.nodes
    again.load_state_dict(net.state_dict())


def test_width_multiplier_scales_channels():
    assert _macs(create_backbone("resnet20", width=0.5)) == pytest.approx(_macs(create_backbone("resnet20")) / 4,
                                                                            rel=0.05)


def test_unknown_backbone_or_argument_is_an_fgnas_error():
    with pytest.raises(FgnasError, match="unknown backbone 'resnet21'"):
        create_backbone("resnet21")
    with pytest.raises(FgnasError, match="resnet20"):
        create_backbone("resnet20", depth=3)
