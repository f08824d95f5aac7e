"""Physical pruning: arch.json + the SearchNetwork's weights -> a PrunedPlan (export/plan.py).

Each layer keeps only its alive channels and each kept operation becomes one conv over exactly the channels it owns,
with BN and the 1/M average folded into its weights. Channel orders are chosen, layer by layer, so that:
  * operations' outputs and the skip input assemble into the layer's output by split/add/concat, never a gather
    (the skip input's order is fixed by its own layer, so runs follow it); the order of a residual stream is chosen
    once, where the stream starts: within each of its own owner sets a layer orders channels by which operations of
    the layers that add it downstream keep them, so those layers split the skip into few runs;
  * a depthwise consumer's kept channels are contiguous in its input (a slice, not a gather) where possible: channels
    are ordered by which downstream depthwise operations read them, in reflected Gray-code order, which makes the
    channel sets of two depthwise operations contiguous at once;
  * the next layer absorbs the order by permuting its input weights.
Operations are pruned by one function per conv type (the Torch-Pruning pattern), behind `register_op_pruner`.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from export.plan import HOMOGENEOUS_ACTIVATIONS, SKIP, Piece, PrunedConv, PrunedHead, PrunedLayer, PrunedPlan, Selection
from profiler.errors import FgnasError
from profiler.lowering import shareable
from profiler.registry import registrar
from search.arch import Arch, ArchLayer, ArchOp, as_arch

BN_EPS = 1e-5


class Weights:
    """The checkpoint's tensors as float64 numpy arrays, with shape checks that name the offending key."""

    def __init__(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        self._sd = state_dict

    def get(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        try:
            tensor = self._sd[key]
        except KeyError:
            raise FgnasError(f"the weights do not match arch.json: no tensor {key}; pass the model.pt of the same "
                             f"run") from None
        if tuple(tensor.shape) != tuple(shape):
            raise FgnasError(f"the weights do not match arch.json: {key} has shape {tuple(tensor.shape)}, the "
                             f"architecture needs {tuple(shape)}; pass the model.pt of the same run")
        return tensor.detach().cpu().double().numpy()


@dataclass(frozen=True)
class OpContext:
    """Everything an op pruner needs: where the op sits and which channels it reads and writes, in which order."""

    layer: ArchLayer
    index: int
    op: ArchOp
    channels: tuple[int, ...]  # output channels (original indices) in emitted order
    in_order: tuple[int, ...]  # the input tensor's channels (original indices) in its order
    in_scale: float  # a pending factor on the input tensor, folded into this conv
    avg_scale: float  # the layer's 1/M, or 1.0 when the consumers absorb it
    splits: tuple[int, ...]

    @property
    def prefix(self) -> str:
        return f"layers.{self.layer.name}.ops.{self.index}."


OpPruner = Callable[[OpContext, Weights], PrunedConv]
OP_PRUNERS: dict[str, OpPruner] = {}


def register_op_pruner(conv_type: str) -> Callable[[OpPruner], OpPruner]:
    return registrar(OP_PRUNERS, conv_type)


def _fold(ctx: OpContext, weights: Weights, weight: np.ndarray, depthwise: bool, select: Selection) -> PrunedConv:
    """BN into the conv, the input's pending scale into the weight, 1/M into weight and bias where the activation
    lets it through (relu, prelu, none), after it otherwise."""
    layer, op, keep = ctx.layer, ctx.op, list(ctx.channels)
    cout = layer.cout
    if op.norm:
        gamma, beta, mean, var = (weights.get(ctx.prefix + f"bn.{n}", (cout,))[keep]
                                  for n in ("weight", "bias", "running_mean", "running_var"))
        factor = gamma / np.sqrt(var + BN_EPS)
        weight = weight * factor[:, None, None, None]
        bias = beta - mean * factor
    else:
        bias = weights.get(ctx.prefix + "conv.bias", (cout,))[keep]
    weight = weight * ctx.in_scale
    slope = weights.get(ctx.prefix + "act.weight", (cout,))[keep] if op.activation == "prelu" else None
    out_scale = ctx.avg_scale
    if op.activation in HOMOGENEOUS_ACTIVATIONS:
        weight, bias, out_scale = weight * ctx.avg_scale, bias * ctx.avg_scale, 1.0
    return PrunedConv(weight.astype(np.float32), bias.astype(np.float32), op.kernel, layer.stride, depthwise,
                      op.activation, None if slope is None else slope.astype(np.float32), float(out_scale),
                      select, ctx.splits)


@register_op_pruner("normal")
def prune_normal(ctx: OpContext, weights: Weights) -> PrunedConv:
    k = ctx.op.kernel
    full = weights.get(ctx.prefix + "conv.weight", (ctx.layer.cout, ctx.layer.cin, k, k))
    return _fold(ctx, weights, full[list(ctx.channels)][:, list(ctx.in_order)], False, Selection())


@register_op_pruner("depthwise")
def prune_depthwise(ctx: OpContext, weights: Weights) -> PrunedConv:
    k = ctx.op.kernel
    full = weights.get(ctx.prefix + "conv.weight", (ctx.layer.cout, 1, k, k))
    position = {c: i for i, c in enumerate(ctx.in_order)}
    missing = [c for c in ctx.channels if c not in position]
    if missing:
        raise FgnasError(f"arch.json: depthwise op {ctx.index} of layer {ctx.layer.name} keeps channels "
                         f"{missing} whose input is pruned; re-run the search with this fgnas")
    positions = [position[c] for c in ctx.channels]
    return _fold(ctx, weights, full[list(ctx.channels)], True, _selection(positions, len(ctx.in_order)))


def _selection(positions: list[int], width: int) -> Selection:
    if positions == list(range(width)):
        return Selection()
    if positions == list(range(positions[0], positions[0] + len(positions))):
        return Selection("slice", positions[0], tuple(positions))
    return Selection("gather", 0, tuple(positions))


def gray_rank(bits: tuple[bool, ...]) -> int:
    """Position of `bits` in the reflected binary Gray code: sorting by it makes the True-sets of the first two bits
    each contiguous (00, 01, 11, 10)."""
    rank = acc = 0
    for bit in bits:
        acc ^= int(bit)
        rank = rank * 2 + acc
    return rank


def _channel_key(readers: list[set[int]], downstream: list[set[int]], own: list[set[int]],
                 in_position: dict[int, int] | None) -> Callable[[int], tuple]:
    """The sort key of a layer's output channels: by the depthwise readers' sets, then descending Gray rank
    downstream (a channel every downstream op keeps comes first), then (for a layer with a depthwise operation) the
    channel's position in the input, then the layer's own operations' sets. A function of its arguments only, so a
    key made for one layer never reads another layer's sets."""
    def key(c: int) -> tuple:
        return (gray_rank(tuple(c in r for r in readers)), -gray_rank(tuple(c in k for k in downstream)),
                in_position.get(c, 0) if in_position is not None else 0, -gray_rank(tuple(c in k for k in own)), c)
    return key


def _input_order(in_position: dict[int, int]) -> Callable[[int], tuple]:
    """The sort key that keeps a layer's output channels in their input's order (a depthwise operation's reads)."""
    return lambda c: (in_position.get(c, 0), c)


def _runs(layer: ArchLayer, skip_order: tuple[int, ...] | None, key: Callable[[int], tuple],
          grouped: bool = True) -> list[tuple[frozenset, list[int]]]:
    """The layer's output as runs of channels with one producer set; skip channels keep the skip tensor's order.
    The other channels form one run per producer set (`grouped`), or follow `key` strictly, a new run wherever the
    producer set changes (which lets `key` make downstream sets contiguous at the price of more runs here)."""
    producers: dict[int, set] = {c: set() for c in layer.active_out}
    for i, op in enumerate(layer.ops):
        for c in op.keep:
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
        for c in rest:
            p = frozenset(producers[c])
            if runs and runs[-1][0] == p and runs[-1][1][-1] in rest:
                runs[-1][1].append(c)
            else:
                runs.append((p, [c]))
        return runs
    groups: dict[frozenset, list[int]] = {}
    for c in rest:
        groups.setdefault(frozenset(producers[c]), []).append(c)
    runs.extend(sorted(groups.items(), key=lambda g: key(g[1][0])))
    return runs


def assembly_cost(runs: list[tuple[frozenset, list[int]]], downstream: list[set[int]], readers: list[set[int]],
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


def _stream_keeps(layers: tuple[ArchLayer, ...]) -> dict[str, list[set[int]]]:
    """Per layer: the channel sets kept by each operation of the layers that add its output downstream, directly
    or through a chain of skips (one residual stream shares one channel index space)."""
    adders: dict[str, list[ArchLayer]] = {}
    for layer in layers:
        if layer.skip:
            adders.setdefault(layer.skip, []).append(layer)
    result: dict[str, list[set[int]]] = {}
    for layer in reversed(layers):
        keeps: list[set[int]] = []
        for adder in adders.get(layer.name, []):
            keeps += [set(op.keep) for op in adder.ops if op.keep] + result.get(adder.name, [])
        result[layer.name] = keeps
    return result


def _check_layer(layer: ArchLayer, orders: dict[str, tuple[int, ...]]) -> None:
    name = layer.name
    if set(orders[layer.input]) != set(layer.active_in):
        raise FgnasError(f"arch.json: layer {name}'s active_in is not its input layer's active_out; the file is "
                         f"inconsistent: re-run the search")
    alive = set().union(*(set(op.keep) for op in layer.ops), set(orders[layer.skip]) if layer.skip else ())
    if alive != set(layer.active_out):
        raise FgnasError(f"arch.json: layer {name}'s active_out is not the union of its operations' and skip's "
                         f"channels; the file is inconsistent: re-run the search")
    if not alive:
        raise FgnasError(f"arch.json: layer {name} keeps no channel, so the network computes nothing; re-run the "
                         f"search with a looser target")


def prune(arch: Arch | Mapping, state_dict: Mapping[str, torch.Tensor], shared: Collection[str] = ()) -> PrunedPlan:
    """The physically pruned network of an architecture (search.arch.Arch; the dict the search writes is parsed and
    validated first) and its weights. Layers named in `shared` (export/assembly.py) are assembled SHARED: each
    operation computes every alive channel of the layer, with zero weights and bias where it keeps none, and the
    operations are added at full width."""
    arch = as_arch(arch)
    weights = Weights(state_dict)
    layers = arch.layers
    skip_sources = {layer.skip for layer in layers if layer.skip}
    dw_readers: dict[str, list[set[int]]] = {}
    for layer in layers:
        dw_readers.setdefault(layer.input, []).extend(
            set(op.keep) for op in layer.ops if op.kind.channelwise and op.keep)
    for readers in dw_readers.values():
        readers.sort(key=len, reverse=True)  # nested sets (the usual case) are then all contiguous in Gray order
    stream_keeps = _stream_keeps(layers)

    orders: dict[str, tuple[int, ...]] = {"input": tuple(range(arch.input.channels))}
    pending: dict[str, float] = {"input": 1.0}
    pruned = []
    for layer in layers:
        name = layer.name
        _check_layer(layer, orders)
        in_order = orders[layer.input]
        in_position = {c: i for i, c in enumerate(in_order)}
        readers = dw_readers.get(name, [])
        downstream = stream_keeps.get(name, [])
        own = [set(op.keep) for op in layer.ops]
        key = _channel_key(readers, downstream, own, in_position if layer.channelwise else None)
        skip_order = orders[layer.skip] if layer.skip else None
        if name in shared:
            if not shareable(layer):
                raise FgnasError(f"layer {name} has a skip or a depthwise operation: it cannot be assembled shared")
            kept = frozenset(i for i, op in enumerate(layer.ops) if op.keep)
            runs = [(kept, sorted(layer.active_out, key=key))]
        else:
            candidates = [_runs(layer, skip_order, key, True), _runs(layer, skip_order, key, False)]
            if layer.channelwise:
                candidates.append(_runs(layer, skip_order, _input_order(in_position), False))
            depthwise_ops = [i for i, op in enumerate(layer.ops) if op.kind.channelwise and op.keep]
            runs = min(candidates, key=lambda r: assembly_cost(r, downstream, readers, depthwise_ops, in_position))
        # The 1/M average is left for the consumers (convs and the head are linear) when nothing adds this output
        # unscaled to something else; otherwise each op folds it (or multiplies by it after a tanh/relu6).
        defer = (layer.scale != 1.0 and not layer.skip and name not in skip_sources
                 and layer.post_activation in HOMOGENEOUS_ACTIVATIONS)
        ops = []
        index_of_op: dict[int, int] = {}
        for i, op in enumerate(layer.ops):
            if not op.keep:
                continue
            mine = [run for p, run in runs if i in p]
            index_of_op[i] = len(ops)
            ctx = OpContext(layer, i, op, tuple(c for run in mine for c in run), in_order, pending[layer.input],
                            1.0 if defer else layer.scale, tuple(len(run) for run in mine))
            try:
                pruner = OP_PRUNERS[op.conv_type]
            except KeyError:
                raise FgnasError(f"arch.json: layer {name} has conv type {op.conv_type!r}, which export cannot "
                                 f"prune (known: {', '.join(OP_PRUNERS)})") from None
            conv = pruner(ctx, weights)
            if name in shared:  # the channels this operation does not keep: zero weight and bias, so zero output
                idle = np.array([c not in set(op.keep) for c in ctx.channels])
                conv.weight[idle] = 0.0
                conv.bias[idle] = 0.0
            ops.append(conv)
        pieces = []
        seen: dict[int, int] = {}
        for producers, _ in runs:
            run_pieces = []
            for p in sorted(producers):
                part = seen.get(p, 0)
                seen[p] = part + 1
                run_pieces.append(Piece(SKIP if p == SKIP else index_of_op[p], part))
            pieces.append(tuple(run_pieces))
        order = tuple(c for _, run in runs for c in run)
        post_slope = None
        if layer.post_activation == "prelu":
            post_slope = weights.get(f"layers.{name}.post.weight", (layer.cout,))[list(order)].astype(np.float32)
        pruned.append(PrunedLayer(name, layer.input, layer.skip, layer.in_hw, layer.stride, tuple(ops),
                                  tuple(len(run) for p, run in runs if SKIP in p), tuple(pieces),
                                  layer.post_activation, post_slope, layer.pool, order))
        orders[name] = order
        pending[name] = layer.scale if defer else 1.0

    head = arch.head
    if set(orders[head.input]) != set(head.active_in):
        raise FgnasError("arch.json: the head's active_in is not its input layer's active_out; re-run the search")
    classes = head.num_classes
    fc_w = weights.get("head.fc.weight", (classes, head.in_channels))[:, list(orders[head.input])]
    fc_b = weights.get("head.fc.bias", (classes,))
    plan_head = PrunedHead(head.input, (fc_w * pending[head.input]).astype(np.float32), fc_b.astype(np.float32))
    return PrunedPlan(arch.input.channels, arch.input.height, arch.input.width, tuple(pruned), plan_head)
