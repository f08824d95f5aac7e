"""How the gates move during the search: each channel's value to the task against its own cost.

The paper's gate gradient is dL/dg + lambda * dR/dg (Eq. 7 through the relaxed gate of Eq. 5). For a gate that is on,
dL/dg is the gradient of the loss with respect to scaling the channel, which BN's own scale already zeroes at a
trained point: it carries no information about how much the channel matters, so every channel of an operation sees
the same push (its cost) and whole layers switch off together, the expensive high-resolution ones first.

Here a channel's value is the loss that removing it would add, estimated from the gate's Fisher information
(Theis et al. 2018, "Faster gaze prediction with dense networks and Fisher pruning"): dL ~ F / 2 with
F = E_n[(d loss_n / d g)^2], recorded per sample by the gated layers and averaged over recent steps. Its price is
lambda * dR/dg (Eq. 8-10, the next layer's input term included), lambda being an exchange rate (loss per unit of the
resource). Every step each gate's margin psi_on - psi_off moves by

    -gate_lr * clamp(PRESSURE_GAIN * (price - value) / (price + value), -1, 1)

so a channel worth less than its price drifts off (at full speed once value and price differ by a fifth) and one
worth more drifts back on. Lambda starts from the data, at the rate below which the cheapest-to-lose on channels add
up to what the first steps of a planned straight descent to the target must shed (the descent reaches the target after
`plan_share` of the search epochs, as the paper reaches its target within 40 of 400 epochs); then it grows while the
resource lags the plan (as seen one gate-crossing later: decisions show in the resource only after the gates have
moved), at a rate the gates can follow, and shrinks when far ahead. No layer loses more than `max_off_share` of its
channels in one step, and none falls below its floor (`--min-channels`).

The layers that write one residual stream (SearchNetwork.tie_streams, `--streams tied`) move as one gate set: the
channel's value and price are summed over them. With `--price steps` (step_costs) a gate's cost is what switching
it changes in the hard resource rather than the resource's slope: on a latency table whose convs step with output
tiles, a channel that opens a tile of its own pays for the whole tile.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from profiler.errors import FgnasError

# A margin never goes beyond this (the initial margin is 1): a decision stays reversible within a few dozen steps.
MAX_MARGIN = 2.0
# A gate moves at full speed once its value and its price differ by 20%: (1.2 - 1) / (1.2 + 1) * 10 ~ 1.
PRESSURE_GAIN = 10.0
# Margin given to a gate that the step cap or the floor turns (back) on: on, and the first to go if pushed.
ON_EPSILON = 1e-3


@dataclass(frozen=True)
class MinChannels:
    """A per-layer floor: a share of the layer's channels (0 < share < 1) or a count (>= 1)."""

    share: float | None = None
    count: int | None = None

    def of(self, channels: int) -> int:
        if self.count is not None:
            return min(channels, self.count)
        return min(channels, max(1, math.ceil((self.share or 0.0) * channels - 1e-9)))

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.share:g}"


def parse_min_channels(text: str | float | int) -> MinChannels:
    """`0.25` (a share of every layer's channels) or `4` (a count, capped at the layer's width)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise FgnasError(f"--min-channels {text!r}: give a share of each layer's channels (0 < x < 1, e.g. 0.25) or "
                         f"a count (a whole number >= 1, e.g. 4)")
    if value < 1:
        return MinChannels(share=value)
    if value != int(value):
        raise FgnasError(f"--min-channels {text!r}: a count must be a whole number (or give a share below 1)")
    return MinChannels(count=int(value))


# What a channel is worth (--value): fisher, the loss its removal adds; relative, its Fisher value over its layer's
# mean (Molchanov et al. 2017's layer-wise normalisation), so every layer's channels are worth 1 on average: channels
# compete with their layer's by value and layers with each other by cost. Raw Fisher ranks a residual block's inner
# convs below the stream it adds to (the stream carries the signal), and the search empties them.
VALUES = ("fisher", "relative")


def relative_values(fisher: Tensor) -> Tensor:
    """A layer's gate values divided by their mean ([M, C] -> [M, C]); all zeros stay zeros."""
    return fisher / fisher.mean().clamp(min=1e-30)


def pressure(fisher: Tensor, cost: Tensor, lam: float) -> Tensor:
    """PRESSURE_GAIN * (price - value) / (price + value) per gate, clamped to [-1, 1], with price = lambda * dR/dg and
    value = F/2: +1 (off at full speed) for a channel worth half its price or less, 0 for one worth exactly its
    price, -1 for one worth twice its price or more."""
    price, value = lam * cost.clamp(min=0), 0.5 * fisher
    return (PRESSURE_GAIN * (price - value) / (price + value).clamp(min=1e-30)).clamp(-1.0, 1.0)


def planned_resource(start: float, target: float, step: int, plan_steps: int) -> float:
    """The planned descent: a straight line from `start` to `target`, reached after `plan_steps` steps."""
    return start + (target - start) * min(1.0, step / max(1, plan_steps))


def threshold_lambda(fisher: Tensor, cost: Tensor, on: Tensor, need: float) -> float | None:
    """The exchange rate (loss per unit of the resource) below which the on gates add up to `need` of the resource:
    the channels worth least per unit of cost first. None when nothing need go (need <= 0) or nothing has a cost."""
    priced = on & (cost > 0)
    if need <= 0 or not priced.any():
        return None
    ratio = (0.5 * fisher[priced]) / cost[priced]
    order = torch.argsort(ratio)
    cumulative = torch.cumsum(cost[priced][order], 0)
    k = min(int(torch.searchsorted(cumulative, torch.tensor(float(need)))), len(order) - 1)
    return max(float(ratio[order][k]), 1e-30)


def step_margins(margins: Tensor, pushes: Tensor, lr: float) -> Tensor:
    """Margins minus lr * push, clamped to +-MAX_MARGIN."""
    return (margins - lr * pushes).clamp(-MAX_MARGIN, MAX_MARGIN)


def cap_switch_off(before: Tensor, after: Tensor, max_share: float) -> Tensor:
    """A layer's margins [M, C] after a step, with at most max(1, floor(max_share * gates on before)) gates
    switched off; the others that crossed are put back just on, the least pushed (margin nearest zero) first."""
    was_on = before > 0
    crossed = was_on & (after <= 0)
    allowed = max(1, math.floor(max_share * int(was_on.sum())))
    excess = int(crossed.sum()) - allowed
    if excess <= 0:
        return after
    out = after.clone()
    flat = out.flatten()
    candidates = torch.nonzero(crossed.flatten()).flatten()
    keep_on = candidates[torch.argsort(flat[candidates], descending=True)[:excess]]
    flat[keep_on] = ON_EPSILON
    return out


def enforce_floor(margins: Tensor, floor: int) -> Tensor:
    """A layer's margins [M, C] with at least `floor` channels produced by some operation: the most nearly-on
    gates of channels no operation produces are switched on until there are."""
    produced = (margins > 0).any(dim=0)
    missing = floor - int(produced.sum())
    if missing <= 0:
        return margins
    out = margins.clone()
    best_op = out.argmax(dim=0)  # per channel, its most nearly-on operation
    best = out.gather(0, best_op[None]).squeeze(0).masked_fill(produced, float("-inf"))
    channels = torch.argsort(best, descending=True)[:missing]
    out[best_op[channels], channels] = ON_EPSILON
    return out


# Steps whose Fisher information is gathered before the first gate moves.
FISHER_WARMUP_STEPS = 10
# How much of each step's Fisher estimate is kept in the running one (about the last ten steps count).
FISHER_DECAY = 0.9
# While the resource lags its plan lambda grows by a factor a step, and shrinks by it when far ahead (by more than
# PLAN_SLACK of the way; merely ahead, it holds, and the search ends early). A gate needs about 1 / gate_lr steps to
# cross from its initial margin, so lambda e-folds no faster than in 4 / gate_lr steps: faster, it would keep growing
# while its last change is still on the way, and a flood of gates would cross at once and come back. On a short plan
# it may still grow 100-fold within it.
PLAN_SLACK = 0.2


def lambda_growth(plan_steps: int, gate_lr: float) -> float:
    return math.exp(max(gate_lr / 4, math.log(100.0) / max(1, plan_steps)))


def next_lambda(lam: float, growth: float, resource: float, planned: float, start: float, target: float) -> float:
    """lambda for the next step: grown while the resource is above its plan, shrunk when below it by more than
    PLAN_SLACK of the way from start to target, else kept."""
    if resource > planned:
        return lam * growth
    if planned - resource > PLAN_SLACK * (start - target):
        return lam / growth
    return lam


class GateMover:
    """The search's gate step on a SearchNetwork: after each weight step, `observe` folds the Fisher information the
    backward pass recorded into a running estimate; once `ready`, `move` prices every gate at the exchange rate that
    keeps the resource on its planned descent and moves the margins, capping what a layer loses and keeping its
    floor."""

    def __init__(self, net, floors: dict[str, int], gate_lr: float, max_off_share: float,
                 value: str = "fisher") -> None:
        self.net = net
        self.floors = floors
        self.gate_lr = gate_lr
        self.max_off_share = max_off_share
        self.value = value
        self.fisher: dict[str, Tensor] = {}
        self.observed = 0

    def observe(self) -> None:
        for name, f in self.net.take_fisher().items():
            f = relative_values(f) if self.value == "relative" else f
            old = self.fisher.get(name)
            self.fisher[name] = f if old is None else FISHER_DECAY * old + (1 - FISHER_DECAY) * f
        self.observed += 1

    @property
    def ready(self) -> bool:
        return self.observed >= FISHER_WARMUP_STEPS

    @property
    def horizon(self) -> int:
        """Steps a gate pushed at full speed takes to switch off from the initial margin: decisions made now show
        in the resource about this many steps later."""
        return math.ceil(1.0 / self.gate_lr)

    def starting_rate(self, costs: dict[str, Tensor], need: float) -> float:
        """The first lambda: the rate below which the cheapest-to-lose on channels add up to `need`."""
        margins = self.net.margins()
        groups = self.groups(margins)
        lam = threshold_lambda(torch.cat([sum(self.fisher[n] for n in g).flatten() for g in groups]),
                               torch.cat([sum(costs[n] for n in g).flatten() for g in groups]),
                               torch.cat([(margins[g[0]] > 0).flatten() for g in groups]), need)
        if lam is None:
            raise FgnasError("no channel has a cost under this resource: the search cannot trade channels for it")
        return lam

    def move(self, lam: float, costs: dict[str, Tensor]) -> None:
        margins = self.net.margins()
        moved = {}
        for group in self.groups(margins):
            # A tied stream's channel is worth what it is worth to all its writers and costs what it costs in all:
            # the sum of their Fisher information (cross terms between layers left out) against the sum of costs.
            m = margins[group[0]]
            fisher = sum(self.fisher[name] for name in group)
            cost = sum(costs[name] for name in group)
            stepped = step_margins(m, pressure(fisher, cost, lam), self.gate_lr)
            floor = max(self.floors[name] for name in group)
            moved[group[0]] = enforce_floor(cap_switch_off(m, stepped, self.max_off_share), floor)
        self.net.set_margins(moved)
        self.net.retie()
        self.net.ensure_alive()

    def groups(self, margins: dict[str, Tensor]) -> list[tuple[str, ...]]:
        """The network's tied groups, and every other layer on its own."""
        tied = {name for group in self.net.tied for name in group}
        return [*self.net.tied, *((name,) for name in margins if name not in tied)]


# Channel counts tried when pricing a layer's on channels by the saving of removing them (step_costs): up to a tile of
# 16 output channels, the widest tile XNNPACK's f32 kernels use on this project's machines.
STEP_PRICE_COUNTS = (1, 2, 4, 8, 16)


def step_costs(net, resource, groups: list[tuple[str, ...]], counts: tuple[int, ...] = STEP_PRICE_COUNTS
               ) -> dict[str, Tensor]:
    """What each gate costs in the hard (tile-rounded) resource, where the straight-through slope sees no tiles.

    An on gate of a group costs the steepest average saving of switching off k of the group's on gates (the least
    sure first), max over k in `counts` of (R - R_k) / k: a channel that opened a tile of its own costs the whole
    tile, one in a full tile the tile's average. An off gate costs what switching on the group's surest off gate adds
    (nothing but its readers' input inside a paid tile, a whole tile past one). Priced on the group's first layer
    (the others 0), as GateMover.move sums a group's costs. The gates are left as they were. A layer with several
    operations is priced across all of them, where switching off a few gates spread over its operations empties no
    tile: for channel search spaces."""
    margins = net.margins()
    base = net.hard_resource(resource)
    out = {name: torch.zeros_like(m) for name, m in margins.items()}

    def resource_with(group: tuple[str, ...], m: Tensor) -> float:
        net.set_margins({name: m for name in group})
        value = net.hard_resource(resource)
        net.set_margins({name: margins[name] for name in group})
        return value

    for group in groups:
        m = margins[group[0]]
        flat = m.flatten()
        on = torch.nonzero(flat > 0).flatten()
        on = on[torch.argsort(flat[on])]
        saving = 0.0
        for k in counts:
            if k >= len(on):
                break
            trial = flat.clone()
            trial[on[:k]] = -ON_EPSILON
            saving = max(saving, (base - resource_with(group, trial.view_as(m))) / k)
        price = torch.where(m > 0, torch.full_like(m, saving), torch.zeros_like(m))
        off = torch.nonzero(flat <= 0).flatten()
        if len(off):
            trial = flat.clone()
            trial[off[torch.argmax(flat[off])]] = ON_EPSILON
            added = max(0.0, resource_with(group, trial.view_as(m)) - base)
            price = torch.where(m > 0, price, torch.full_like(m, added))
        out[group[0]] = price
    return out
