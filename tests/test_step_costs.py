"""`--price steps` (search.dynamics.step_costs): gates priced by what switching them changes in the hard resource,
so that a channel that opens an output tile pays for the tile. Checked on a resource with hand-computable steps."""
import math

import pytest
import torch

from profiler.errors import FgnasError
from search.dynamics import step_costs
from search.train import SearchConfig

TILE, TILE_COST, PER_CHANNEL = 16, 10.0, 1.0


class SteppedNet:
    """Layers of [1, C] gates; the resource of a layer with n channels on: TILE_COST per started tile of TILE
    channels plus PER_CHANNEL per channel (an output-tile step and its readers' linear input term)."""

    def __init__(self, on: dict[str, int], channels: int = 40) -> None:
        self._m = {name: torch.tensor([[1.0 + i / 100 if i < n else -1.0 for i in range(channels)]])
                   for name, n in on.items()}

    def margins(self) -> dict[str, torch.Tensor]:
        return {name: m.clone() for name, m in self._m.items()}

    def set_margins(self, margins: dict[str, torch.Tensor]) -> None:
        self._m.update({name: m.clone() for name, m in margins.items()})

    def hard_resource(self, _resource) -> float:
        on = [int((m > 0).sum()) for m in self._m.values()]
        return sum(TILE_COST * math.ceil(n / TILE) + PER_CHANNEL * n for n in on)


@pytest.mark.parametrize("on, on_price, off_price", [
    (17, TILE_COST + PER_CHANNEL, PER_CHANNEL),  # the 17th channel opened a tile of its own; the 18th is inside it
    (24, (TILE_COST + 8 * PER_CHANNEL) / 8, PER_CHANNEL),  # emptying the second tile saves it over 8 channels
    (32, (TILE_COST + 16 * PER_CHANNEL) / 16, TILE_COST + PER_CHANNEL),  # a full tile: its average; a 33rd opens one
    (16, PER_CHANNEL, TILE_COST + PER_CHANNEL),  # one tile: emptying it is not on offer (k < channels on)
])
def test_on_gates_cost_the_steepest_average_saving_and_off_gates_what_one_more_adds(on, on_price, off_price):
    net = SteppedNet({"a": on})
    before = net.margins()
    costs = step_costs(net, None, [("a",)])["a"]
    assert torch.allclose(costs[before["a"] > 0], torch.tensor(on_price))
    assert torch.allclose(costs[before["a"] <= 0], torch.tensor(off_price))
    assert torch.equal(net.margins()["a"], before["a"])  # the gates are left as they were


def test_a_tied_group_is_priced_once_on_its_first_layer_switching_all_its_layers():
    net = SteppedNet({"s": 17, "t": 17, "free": 17})
    costs = step_costs(net, None, [("s", "t"), ("free",)])
    on = net.margins()["s"] > 0
    assert torch.allclose(costs["s"][on], torch.tensor(2 * (TILE_COST + PER_CHANNEL)))  # both writers lose the tile
    assert torch.equal(costs["t"], torch.zeros_like(costs["t"]))  # GateMover sums a group's costs
    assert torch.allclose(costs["free"][on], torch.tensor(TILE_COST + PER_CHANNEL))


def test_price_is_slope_or_steps():
    assert SearchConfig(target="50%flops").price == "slope"
    with pytest.raises(FgnasError, match="--price"):
        SearchConfig(target="50%flops", price="tiles")

