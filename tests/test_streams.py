"""Tied residual streams (`--streams tied`, the default): the layers that write one residual stream keep one channel
set, so the exported network adds equal channel sets and needs no SPLIT_V / CONCATENATION to assemble them."""
import pytest
import torch

from profiler.errors import FgnasError
from profiler.lowering import lower_arch
from search.backbones import create_backbone
from search.dynamics import GateMover, pressure, step_margins
from search.resources import create_resource
from search.rundir import RunDir
from search.train import SearchConfig, fill_to_target, prune_to_target

ASSEMBLY = {"SPLIT_V", "CONCATENATION"}


def _resnet20():
    return create_backbone("resnet20", search_space="channels")


def _assembly_ops(net) -> list[str]:
    return [lowered.op.op for lowered in lower_arch(net.to_arch())
            if getattr(lowered.op, "op", None) in ASSEMBLY]


def _scramble(net, seed: int = 0) -> None:
    """Distinct margins in every layer (a pruning then has something to choose between)."""
    gen = torch.Generator().manual_seed(seed)
    net.set_margins({name: torch.rand(m.shape, generator=gen) + 0.1 for name, m in net.margins().items()})


def test_resnet20_ties_each_stage_stream_stem_or_shortcut_with_its_block_outputs():
    net = _resnet20()
    tied = net.tie_streams()
    assert tied == (("stem", "layer1_0_conv2", "layer1_1_conv2", "layer1_2_conv2"),
                    ("layer2_0_shortcut", "layer2_0_conv2", "layer2_1_conv2", "layer2_2_conv2"),
                    ("layer3_0_shortcut", "layer3_0_conv2", "layer3_1_conv2", "layer3_2_conv2"))


def test_a_gate_step_moves_a_tied_group_by_its_summed_value_against_its_summed_cost():
    net = _resnet20()
    net.tie_streams()
    floors = {name: 1 for name in net.layers}
    mover = GateMover(net, floors, gate_lr=0.5, max_off_share=1.0)
    gen = torch.Generator().manual_seed(1)
    mover.fisher = {name: torch.rand(m.shape, generator=gen) for name, m in net.margins().items()}
    costs = {name: torch.rand(m.shape, generator=gen) for name, m in net.margins().items()}
    before = net.margins()
    group = net.tied[0]
    expected = step_margins(before[group[0]], pressure(sum(mover.fisher[n] for n in group),
                                                       sum(costs[n] for n in group), 0.7), 0.5)
    mover.move(0.7, costs)
    after = net.margins()
    for name in group:
        assert torch.allclose(after[name], expected)
    free = "layer1_0_conv1"
    assert torch.allclose(after[free], step_margins(before[free], pressure(mover.fisher[free], costs[free], 0.7), 0.5))


@pytest.mark.parametrize("resource_name", ["flops", "params"])
def test_pruning_and_refilling_a_tied_network_keeps_one_channel_set_per_stream(resource_name):
    net = _resnet20()
    _scramble(net)
    net.tie_streams()
    resource = create_resource(resource_name)
    target = 0.5 * net.full_resource(resource)
    assert prune_to_target(net, resource, target) <= target
    net.set_margins({name: m * 0.5 for name, m in net.margins().items()})  # some gates near the edge to refill
    assert fill_to_target(net, resource, target) <= target
    margins = net.margins()
    for group in net.tied:
        for name in group[1:]:
            assert torch.equal(margins[name] > 0, margins[group[0]] > 0)
    assert _assembly_ops(net) == []


def test_free_streams_let_each_writer_pick_its_channels_and_then_export_needs_assembly():
    net = _resnet20()
    _scramble(net)
    resource = create_resource("flops")
    prune_to_target(net, resource, 0.5 * net.full_resource(resource))
    assert "SPLIT_V" in _assembly_ops(net)


def test_streams_must_be_tied_or_free_and_old_run_directories_read_as_free(tmp_path):
    with pytest.raises(FgnasError, match="--streams"):
        SearchConfig(target="50%flops", streams="loose")
    run = RunDir(tmp_path / "old")
    run.start({"target": "50%flops", "backbone": "digits"})
    assert run.stored_config()["streams"] == "free" and run.stored_config()["price"] == "slope"
