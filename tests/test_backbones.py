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


def test_vgg19_matches_network_slimmings_20_04m_params_and_797m_flops():
    """Liu et al. 2017, Table 1 (the paper's Table 6 baseline): 20.04M params, 7.97e8 FLOPs. By hand, sum of
    9 cin cout over the sixteen 3x3 convs = 20,018,880 weights, 5,504 BN channels of two parameters, a 512 x 10 Linear
    with its bias: 20,035,018 in torch. MACs: 9 cin cout H W per conv, 39.5M at 32x32 + 56.6M at 16x16 + 132.1M at 8x8
    + 132.1M at 4x4 + 37.7M at 2x2 = 398,131,200, plus the Linear's 5,120; twice that, 796.3M FLOPs, is their 797M
    less the BN and ReLU work they also count (0.1%). Exact counts, so exact asserts."""
    net = create_backbone("vgg19")
    assert sum(p.numel() for p in net.weight_parameters()) == 20_035_018
    assert net.full_resource(PARAMS) == 20_035_018 - 5_504  # one folded bias per channel where torch's BN has two
    assert _macs(net) == 398_136_320
    assert net.full_resource(FLOPS) == pytest.approx(797e6, rel=0.002)
    assert len(net.nodes) == 16 and net.head_spec.in_hw == (2, 2)  # no pool after the last stage


def test_resnet18_cifar_matches_the_published_11_2m_params_and_0_56_gmacs():
    """The CIFAR ResNet-18 (3x3 stem, no max pool; e.g. kuangliu/pytorch-cifar): 11,173,962 params, 0.56 GMACs. By
    hand: stem 1,728 + stage 1 four 9x64x64 convs 147,456 + stage 2 73,728 + 3 x 147,456 + a 64x128 shortcut 8,192 +
    stage 3 294,912 + 3 x 589,824 + 32,768 + stage 4 1,179,648 + 3 x 2,359,296 + 131,072 = 11,159,232 conv weights,
    4,800 BN channels of two parameters, a 512 x 10 Linear: 11,173,962. MACs: stem at 32x32 1.77M, stage 1 at 32x32
    151.0M, stages 2-4 each 134.2M (at 16x16, 8x8, 4x4: a quarter of the size, four times the weights), the Linear
    5,120: 555,422,720. (The paper's 26.0G FLOPs for ResNet-18 is none of these: see resnet.py.)"""
    net = create_backbone("resnet18")
    assert sum(p.numel() for p in net.weight_parameters()) == 11_173_962
    assert net.full_resource(PARAMS) == 11_173_962 - 4_800
    assert _macs(net) == 555_422_720
    assert _macs(net) == pytest.approx(0.56e9, rel=0.01)
    assert sum(n.name.endswith("shortcut") for n in net.nodes) == 3 and net.head_spec.in_hw == (4, 4)


def test_no_resnet18_variant_gives_the_papers_26g_flops():
    """Table 6 lists ResNet-18 at 26.0G FLOPs, 13.0 GMACs in its convention (2 x MACs: VGG-19's 797M). The CIFAR
    variant has 0.56 GMACs; torchvision's ImageNet ResNet-18 (7x7 stride-2 stem, max pool) 1.82 at 224x224, its
    published figure; the CIFAR variant run at 224x224 27.2, the closest, and 2x off in that convention."""
    from torchvision_models import ResNet18

    macs = 0

    def count(module, inputs, output):
        nonlocal macs
        per_output = module.weight[0].numel() if isinstance(module, torch.nn.Conv2d) else module.weight.shape[1]
        macs += output.numel() * per_output

    imagenet = ResNet18()
    for m in imagenet.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(count)
    with torch.no_grad():
        imagenet(torch.zeros(1, 3, 224, 224))
    assert macs == pytest.approx(1.82e9, rel=0.005)
    assert _macs(create_backbone("resnet18", input_size=224)) == pytest.approx(27.2e9, rel=0.001)


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
