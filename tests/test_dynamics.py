import math

import pytest
import torch

from profiler.errors import FgnasError
from search.dynamics import (
    MAX_MARGIN,
    ON_EPSILON,
    GateMover,
    MinChannels,
    cap_switch_off,
    enforce_floor,
    lambda_growth,
    next_lambda,
    parse_min_channels,
    planned_resource,
    pressure,
    relative_values,
    step_margins,
    threshold_lambda,
)


def test_min_channels_is_a_share_or_a_count_and_never_above_the_layer():
    assert parse_min_channels("0.25") == MinChannels(share=0.25)
    assert parse_min_channels("4") == MinChannels(count=4)
    assert MinChannels(share=0.25).of(16) == 4 and MinChannels(share=0.25).of(10) == 3  # ceil(2.5)
    assert MinChannels(share=0.01).of(16) == 1
    assert MinChannels(count=4).of(3) == 3
    for bad in ("0", "-1", "nan", "inf", "2.5", "x"):
        with pytest.raises(FgnasError, match="--min-channels"):
            parse_min_channels(bad)


def test_pressure_saturates_once_value_and_price_differ_by_a_fifth():
    fisher = torch.tensor([[4.0, 0.0, 2.0, 2.0, 0.0]])  # value F/2: 2, 0, 1, 1, 0
    cost = torch.tensor([[1.0, 1.0, 2.0, 2.4, 0.0]])  # price at lambda 0.5: 0.5, 0.5, 1, 1.2, 0
    p = pressure(fisher, cost, lam=0.5)
    assert p[0, 0] == -1.0  # worth 4x its price: back on at full speed
    assert p[0, 1] == 1.0  # worth nothing
    assert p[0, 2] == 0.0  # worth exactly its price
    assert p[0, 3] == pytest.approx(10 * 0.2 / 2.2)  # price 20% over value: not yet full speed
    assert p[0, 4] == 0.0  # neither value nor price


def test_planned_resource_is_a_straight_line_to_the_target():
    assert planned_resource(100.0, 50.0, 0, 10) == 100.0
    assert planned_resource(100.0, 50.0, 5, 10) == 75.0
    assert planned_resource(100.0, 50.0, 30, 10) == 50.0


def test_threshold_lambda_prices_off_the_cheapest_to_lose_channels_that_cover_the_need():
    fisher = torch.tensor([2.0, 8.0, 4.0, 1.0, 6.0])  # value F/2: 1, 4, 2, 0.5, 3
    cost = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])  # value per cost: 1, 4, 2, 0.5, (free)
    on = torch.tensor([True, True, True, False, True])  # gate 3 is already off
    assert threshold_lambda(fisher, cost, on, need=0.5) == pytest.approx(1.0)  # gate 0 alone covers it
    assert threshold_lambda(fisher, cost, on, need=1.5) == pytest.approx(2.0)  # gates 0 and 2
    assert threshold_lambda(fisher, cost, on, need=99.0) == pytest.approx(4.0)  # everything priced
    assert threshold_lambda(fisher, cost, on, need=0.0) is None
    assert threshold_lambda(fisher, torch.zeros(5), on, need=1.0) is None


def test_step_margins_moves_by_the_push_and_clamps():
    out = step_margins(torch.tensor([1.0, 1.0, 1.9]), torch.tensor([1.0, -0.5, -1.0]), lr=0.5)
    assert torch.allclose(out, torch.tensor([0.5, 1.25, MAX_MARGIN]))


def test_cap_switch_off_keeps_all_but_the_most_pushed_on():
    before = torch.tensor([[1.0] * 10 + [-1.0] * 2])  # 10 on
    after = torch.tensor([[-0.5, -0.1, -0.3, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, -1.0, -1.0]])
    out = cap_switch_off(before, after, max_share=0.1)  # one of 10 may go
    assert (out[0, :3] <= 0).tolist() == [True, False, False]  # the most pushed (-0.5) goes
    assert out[0, 1] == ON_EPSILON and out[0, 2] == ON_EPSILON
    assert torch.equal(out[0, 3:], after[0, 3:])
    assert torch.equal(cap_switch_off(before, after, max_share=0.5), after)  # 3 of 10 within 5


def test_enforce_floor_switches_on_the_most_nearly_on_channels():
    margins = torch.tensor([[-0.2, -1.0, 0.3, -2.0],
                            [-0.1, -0.5, -1.0, -2.0]])  # channel 2 produced; best off: ch0 (op1, -0.1), ch1 (-0.5)
    out = enforce_floor(margins, floor=3)
    produced = (out > 0).any(dim=0)
    assert produced.tolist() == [True, True, True, False]
    assert out[1, 0] == ON_EPSILON and out[1, 1] == ON_EPSILON and out[0, 0] == -0.2
    assert torch.equal(enforce_floor(margins, floor=1), margins)


def test_lambda_grows_while_behind_the_plan_and_shrinks_when_well_ahead():
    assert lambda_growth(10_000, gate_lr=0.05) == pytest.approx(math.exp(0.0125))  # e-folds in 4 / gate_lr steps
    assert lambda_growth(20, gate_lr=0.05) == pytest.approx(100 ** (1 / 20))  # a short plan: 100-fold within it
    assert next_lambda(2.0, 1.1, resource=80.0, planned=75.0, start=100.0, target=50.0) == pytest.approx(2.2)
    assert next_lambda(2.0, 1.1, resource=70.0, planned=75.0, start=100.0, target=50.0) == 2.0  # ahead: held
    assert next_lambda(2.0, 1.1, resource=64.0, planned=75.0, start=100.0, target=50.0) == pytest.approx(2 / 1.1)


def _signal_in_last_channels(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """8 input channels constant over an 8x8 image: channels 6 and 7 carry the class (+-1 plus noise), channels 0-5
    are noise of the same spread, unrelated to it."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 8, generator=g)
    x[:, 6:] = 0.5 * x[:, 6:] + (2.0 * y - 1.0)[:, None]
    return x[:, :, None, None].expand(n, 8, 8, 8).contiguous(), y


def _searched_channels(seed: int = 0) -> list[int]:
    """A depthwise 1x1 layer over the 8 inputs, pooled into a linear head; trained, then searched with the real
    GateMover under a FLOPs target that leaves room for 2 of its 8 channels. Returns the channels it keeps."""
    import torch.nn.functional as F

    from search.layer import LayerNode
    from search.network import HeadSpec, SearchNetwork
    from search.operations import OpSpec
    from search.resources import create_resource

    torch.manual_seed(seed)
    node = LayerNode("dw", "input", (8, 8), 8, 8, 1, (OpSpec("depthwise", 1, "none"),))
    net = SearchNetwork([node], HeadSpec("dw", (8, 8), 8, 2), in_channels=8, input_size=8)
    flops = create_resource("flops")
    target = 0.3 * net.full_resource(flops)
    x, y = _signal_in_last_channels(2048, seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)

    def train_step() -> None:
        idx = torch.randint(0, len(y), (64,))
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    net.set_search_mode("pretrain")
    for _ in range(100):
        train_step()
    net.set_search_mode("search")
    mover = GateMover(net, {"dw": 1}, gate_lr=0.1, max_off_share=0.2)
    lam = None
    for _ in range(400):
        train_step()
        mover.observe()
        if not mover.ready:
            continue
        costs = net.cost_gradients(flops)
        lam = mover.starting_rate(costs, 0.05 * net.full_resource(flops)) if lam is None else lam * 1.03
        mover.move(lam, costs)
        if net.hard_resource(flops) <= target:
            break
    assert net.hard_resource(flops) <= target
    return [i for i, on in enumerate((net.margins()["dw"] > 0)[0].tolist()) if on]


def test_the_search_keeps_the_channels_that_carry_the_signal():
    # Every channel of the layer costs the same: only their value to the task can tell them apart.
    for seed in (0, 1):
        assert _searched_channels(seed) == [6, 7]


def test_relative_values_divide_a_layer_by_its_mean():
    assert torch.allclose(relative_values(torch.tensor([[1.0, 3.0], [0.0, 4.0]])),
                          torch.tensor([[0.5, 1.5], [0.0, 2.0]]))
    assert torch.equal(relative_values(torch.zeros(1, 3)), torch.zeros(1, 3))


class _FisherNet:
    """take_fisher only: two layers whose Fisher values differ by a factor of 100 in scale, not in shape."""

    def take_fisher(self):
        return {"inner": torch.tensor([[1.0, 3.0]]), "stream": torch.tensor([[100.0, 300.0]])}


def test_relative_values_put_layers_of_any_fisher_scale_on_one_footing():
    fisher, relative = (GateMover(_FisherNet(), {}, 0.1, 0.1, value) for value in ("fisher", "relative"))
    for mover in (fisher, relative):
        mover.observe()
    assert torch.equal(fisher.fisher["stream"], 100 * fisher.fisher["inner"])
    assert torch.equal(relative.fisher["stream"], relative.fisher["inner"])


def test_value_is_fisher_by_default_and_old_runs_read_as_fisher(tmp_path):
    from profiler.errors import FgnasError
    from search.rundir import RunDir
    from search.train import SearchConfig

    assert SearchConfig(target="50%flops").value == "fisher"
    with pytest.raises(FgnasError, match="--value 'l2': use fisher or relative"):
        SearchConfig(target="50%flops", value="l2")
    run = RunDir(tmp_path)
    run.file(run.CONFIG).write_text('{"target": "50%flops"}')
    assert run.stored_config()["value"] == "fisher"
