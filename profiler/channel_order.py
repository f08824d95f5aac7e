"""The order export writes each searched layer's output channels in, and so the runs it assembles the layer from:
the one computation export builds by (export/prune.py), the lowering rules list (profiler/lowering.py) and the search
prices (search/network.py).

A layer's output is written run after run. A run is consecutive channels produced by one set of producers (the
layer's operations, and its skip input as SKIP): each producer's output is split into the runs it feeds (SPLIT_V),
each run sums its producers' pieces (ADDs), the runs are concatenated. Orders are chosen, layer by layer, so that:
  * operations' outputs and the skip input assemble into the layer's output by split/add/concat, never a gather
    (the skip input's order is fixed by its own layer, so runs follow it); the order of a residual stream is chosen
    once, where the stream starts: within each of its own owner sets a layer orders channels by which operations of
    the layers that add it downstream keep them, so those layers split the skip into few runs;
  * a depthwise consumer's kept channels are contiguous in its input (a slice, not a gather) where possible: channels
    are ordered by which downstream depthwise operations read them, in reflected Gray-code order, which makes the
    channel sets of two depthwise operations contiguous at once.
The runs follow the skip's order, so a layer adding a stream whose channels its own operations keep in other sets
than the stream's start expected pays more runs than one per set of producers: the price of one order per stream.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass
from functools import cached_property, lru_cache

SKIP = -1  # the skip input, as a producer


@dataclass(frozen=True)
class LayerChannels:
    """What ordering reads of a searched layer: where it sits and which output channels each operation keeps."""

    name: str
    input: str
    skip: str | None
    keeps: tuple[tuple[int, ...], ...]  # per operation; () = removed
    channelwise: tuple[bool, ...]  # per operation: reads its input channel by channel (depthwise)
    active_out: tuple[int, ...]

    @classmethod
    def of(cls, layer) -> LayerChannels:
        """Of a search.arch.ArchLayer (which profiler/ does not import)."""
        return cls(layer.name, layer.input, layer.skip, tuple(op.keep for op in layer.ops),
                   tuple(op.kind.channelwise for op in layer.ops), layer.active_out)


Run = tuple[frozenset[int], tuple[int, ...]]  # (producers, channels in order)


@dataclass(frozen=True)
class LayerRuns:
    """A layer's output as export writes it: run after run."""

    runs: tuple[Run, ...]

    @cached_property
    def order(self) -> tuple[int, ...]:
        """Original index of each output channel."""
        return tuple(c for _, run in self.runs for c in run)

    def channels(self, producer: int) -> tuple[int, ...]:
        """The channels `producer` computes, in the order it writes them (the runs it feeds, one after another)."""
        return tuple(c for p, run in self.runs if producer in p for c in run)

    def pieces(self, producer: int) -> tuple[int, ...]:
        """The sizes of the runs `producer` feeds: its SPLIT_V, when more than one."""
        return tuple(len(run) for p, run in self.runs if producer in p)


@dataclass(frozen=True)
class Selection:
    """Which channels of its input tensor a depthwise conv reads: all of them, a contiguous slice, or (when no
    channel order could make them contiguous) a gather."""

    kind: str = "all"  # all | slice | gather
    start: int = 0
    indices: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        return len(self.indices)


def selection(positions: Sequence[int], width: int) -> Selection:
    """How a depthwise conv reads the channels at `positions` (in its output order) of a `width`-channel input."""
    positions = list(positions)
    if positions == list(range(width)):
        return Selection()
    if positions == list(range(positions[0], positions[0] + len(positions))):
        return Selection("slice", positions[0], tuple(positions))
    return Selection("gather", 0, tuple(positions))


def gray_ranks(channels: Sequence[int], sets: Sequence[Set[int]]) -> dict[int, int]:
    """Each channel's position in the reflected binary Gray code of its membership bits (one per set, the first the
    most significant): sorting by it makes the channels of each of the first two sets contiguous (00, 01, 11, 10).
    All channels at once: the sort keys of a layer of a thousand channels are computed every time the search
    prices the network."""
    rank, acc = dict.fromkeys(channels, 0), dict.fromkeys(channels, 0)
    for members in sets:
        for c in channels:
            acc[c] ^= c in members
            rank[c] = 2 * rank[c] + acc[c]
    return rank


def _channel_keys(channels: Sequence[int], readers: Sequence[Set[int]], downstream: Sequence[Set[int]],
                  own: Sequence[Set[int]], in_position: dict[int, int] | None) -> dict[int, tuple]:
    """The sort key of each of a layer's output channels: by the depthwise readers' sets, then descending Gray rank
    downstream (a channel every downstream op keeps comes first), then (for a layer with a depthwise operation) the
    channel's position in the input, then the layer's own operations' sets. A function of its arguments only, so
    keys made for one layer never read another layer's sets."""
    read, kept, mine = gray_ranks(channels, readers), gray_ranks(channels, downstream), gray_ranks(channels, own)
    position = in_position if in_position is not None else {}
    return {c: (read[c], -kept[c], position.get(c, 0), -mine[c], c) for c in channels}


def _input_order(in_position: dict[int, int]) -> Callable[[int], tuple]:
    """The sort key that keeps a layer's output channels in their input's order (a depthwise operation's reads)."""
    return lambda c: (in_position.get(c, 0), c)


def _runs(layer: LayerChannels, skip_order: tuple[int, ...] | None, key: Callable[[int], tuple],
          grouped: bool = True) -> tuple[Run, ...]:
    """The layer's output as runs of channels with one producer set; skip channels keep the skip tensor's order.
    The other channels form one run per producer set (`grouped`), or follow `key` strictly, a new run wherever the
    producer set changes (which lets `key` make downstream sets contiguous at the price of more runs here)."""
    producers: dict[int, set] = {c: set() for c in layer.active_out}
    for i, keep in enumerate(layer.keeps):
        for c in keep:
            producers[c].add(i)
    skip_set = set(skip_order or ())
    for c in skip_set:
        producers[c].add(SKIP)
    runs: list[tuple[frozenset, list[int]]] = []
    for c in skip_order or ():
        p = frozenset(producers[c])
        if runs and runs[-1][0] == p:
            runs[-1][1].append(c)
        else:
            runs.append((p, [c]))
    rest = sorted(set(layer.active_out) - skip_set, key=key)
    if not grouped:
        skip_runs = len(runs)  # a run at this index or later is one of `rest`'s, which may grow
        for c in rest:
            p = frozenset(producers[c])
            if len(runs) > skip_runs and runs[-1][0] == p:
                runs[-1][1].append(c)
            else:
                runs.append((p, [c]))
    else:
        groups: dict[frozenset, list[int]] = {}
        for c in rest:
            groups.setdefault(frozenset(producers[c]), []).append(c)
        runs.extend(sorted(groups.items(), key=lambda g: key(g[1][0])))
    return tuple((p, tuple(run)) for p, run in runs)


def assembly_cost(runs: Sequence[Run], downstream: Sequence[Set[int]], readers: Sequence[Set[int]],
                  depthwise_ops: list[int], in_position: dict[int, int]) -> int:
    """Ops an order costs: ADDs here, ADDs where the layers downstream add this output (one per operation per run
    of channels they keep alike), a GATHER per depthwise reader whose channels are not contiguous, and a GATHER per
    depthwise operation here whose channels are not emitted as a contiguous slice of the input."""
    order = [c for _, run in runs for c in run]
    cost = sum(len(p) - 1 for p, _ in runs)
    for i in depthwise_ops:
        places = [in_position.get(c, -1) for p, run in runs if i in p for c in run]
        cost += int(places != list(range(places[0], places[0] + len(places))))
    previous = None
    for c in order:
        bits = tuple(c in k for k in downstream)
        if bits != previous:
            cost += sum(bits)
            previous = bits
    position = {c: i for i, c in enumerate(order)}
    for r in readers:
        places = sorted(position[c] for c in r if c in position)
        cost += int(bool(places) and places[-1] - places[0] + 1 != len(places))
    return cost


def _stream_keeps(layers: Sequence[LayerChannels]) -> dict[str, tuple[frozenset[int], ...]]:
    """Per layer: the channel sets kept by each operation of the layers that add its output downstream, directly
    or through a chain of skips (one residual stream shares one channel index space)."""
    adders: dict[str, list[LayerChannels]] = {}
    for layer in layers:
        if layer.skip:
            adders.setdefault(layer.skip, []).append(layer)
    result: dict[str, tuple[frozenset[int], ...]] = {}
    for layer in reversed(layers):
        keeps: list[frozenset[int]] = []
        for adder in adders.get(layer.name, []):
            keeps += [frozenset(keep) for keep in adder.keeps if keep] + list(result.get(adder.name, ()))
        result[layer.name] = tuple(keeps)
    return result


def _depthwise_readers(layers: Sequence[LayerChannels]) -> dict[str, tuple[frozenset[int], ...]]:
    """Per tensor: the channel sets its depthwise readers keep, largest first (nested sets, the usual case, are then
    all contiguous in Gray order)."""
    readers: dict[str, list[frozenset[int]]] = {}
    for layer in layers:
        readers.setdefault(layer.input, []).extend(
            frozenset(keep) for keep, channelwise in zip(layer.keeps, layer.channelwise) if channelwise and keep)
    return {name: tuple(sorted(sets, key=len, reverse=True)) for name, sets in readers.items()}


# The search prices its network tens of times a gate step, most layers' channels unchanged between calls: a layer's
# runs are kept for the arguments they are a function of.
@lru_cache(maxsize=4096)
def _split_runs(layer: LayerChannels, readers: tuple[frozenset[int], ...], downstream: tuple[frozenset[int], ...],
                in_order: tuple[int, ...] | None, skip_order: tuple[int, ...] | None) -> LayerRuns:
    """The runs of a SPLIT layer: the cheapest (`assembly_cost`) of its candidate orders. `in_order`: its input's
    order, for a layer with a depthwise operation (None otherwise: the others' orders do not depend on it)."""
    in_position = {c: i for i, c in enumerate(in_order or ())}
    keys = _channel_keys(layer.active_out, readers, downstream, [set(keep) for keep in layer.keeps],
                         in_position if in_order is not None else None)
    candidates = [_runs(layer, skip_order, keys.__getitem__, True), _runs(layer, skip_order, keys.__getitem__, False)]
    if in_order is not None:
        candidates.append(_runs(layer, skip_order, _input_order(in_position), False))
    depthwise_ops = [i for i, keep in enumerate(layer.keeps) if layer.channelwise[i] and keep]
    return LayerRuns(min(candidates, key=lambda r: assembly_cost(r, downstream, readers, depthwise_ops, in_position)))


@lru_cache(maxsize=1024)
def _shared_runs(layer: LayerChannels, readers: tuple[frozenset[int], ...],
                 downstream: tuple[frozenset[int], ...]) -> LayerRuns:
    """The one run of a SHARED layer (no skip, no depthwise operation): every kept operation, all alive channels."""
    keys = _channel_keys(layer.active_out, readers, downstream, [set(keep) for keep in layer.keeps], None)
    kept = frozenset(i for i, keep in enumerate(layer.keeps) if keep)
    return LayerRuns(((kept, tuple(sorted(layer.active_out, key=keys.__getitem__))),))


# Whether a layer is assembled SHARED, given the runs SPLIT would need (export: the layers it was told; the search:
# whichever its resource finds cheaper, search.resources.layer_assembly).
SharedChoice = Callable[[LayerChannels, LayerRuns], bool]


def layer_runs(layers: Sequence[LayerChannels], input_channels: int, shared: SharedChoice) -> dict[str, LayerRuns]:
    """Every layer's runs, in the network's order. A SPLIT layer takes the cheapest (`assembly_cost`) of its
    candidate orders; a SHARED one (every kept operation computing every alive channel) is one run of all its kept
    operations. `shared` is asked per layer with the runs SPLIT would need, which for a layer SHARED can serve (no
    skip, no depthwise operation) do not depend on any other layer's choice."""
    readers_of = _depthwise_readers(layers)
    stream_keeps = _stream_keeps(layers)
    orders: dict[str, tuple[int, ...]] = {"input": tuple(range(input_channels))}
    out: dict[str, LayerRuns] = {}
    for layer in layers:
        readers = readers_of.get(layer.name, ())
        downstream = stream_keeps.get(layer.name, ())
        split = _split_runs(layer, readers, downstream, orders[layer.input] if any(layer.channelwise) else None,
                            orders[layer.skip] if layer.skip else None)
        runs = _shared_runs(layer, readers, downstream) if shared(layer, split) else split
        out[layer.name] = runs
        orders[layer.name] = runs.order
    return out
