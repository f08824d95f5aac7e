"""Physical pruning: arch.json + the SearchNetwork's weights -> a PrunedPlan (export/plan.py).

Each layer keeps only its alive channels and each kept operation becomes one conv over exactly the channels it owns,
with BN and the 1/M average folded into its weights. The layers' channel orders, and so the runs each layer is
assembled from, are profiler/channel_order.py's (the rules the search prices by); the next layer absorbs an order by
permuting its input weights. Operations are pruned by one function per conv type (the Torch-Pruning pattern), behind
`register_op_pruner`.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from export.plan import SKIP, Piece, PrunedConv, PrunedHead, PrunedLayer, PrunedPlan, Selection
from profiler.channel_order import LayerChannels, layer_runs, selection
from profiler.errors import FgnasError
from profiler.lowering import HOMOGENEOUS_ACTIVATIONS, average_deferred, shareable
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
    return _fold(ctx, weights, full[list(ctx.channels)], True, selection(positions, len(ctx.in_order)))


def _check_layer(layer: ArchLayer, alive: dict[str, set[int]], shared: bool) -> None:
    """The layer against its input's and skip's alive channels (`alive`), before any order is chosen."""
    name = layer.name
    if alive[layer.input] != set(layer.active_in):
        raise FgnasError(f"arch.json: layer {name}'s active_in is not its input layer's active_out; the file is "
                         f"inconsistent: re-run the search")
    produced = set().union(*(set(op.keep) for op in layer.ops), alive[layer.skip] if layer.skip else ())
    if produced != set(layer.active_out):
        raise FgnasError(f"arch.json: layer {name}'s active_out is not the union of its operations' and skip's "
                         f"channels; the file is inconsistent: re-run the search")
    if not produced:
        raise FgnasError(f"arch.json: layer {name} keeps no channel, so the network computes nothing; re-run the "
                         f"search with a looser target")
    if shared and not shareable(layer):
        raise FgnasError(f"layer {name} has a skip or a depthwise operation: it cannot be assembled shared")


def prune(arch: Arch | Mapping, state_dict: Mapping[str, torch.Tensor], shared: Collection[str] = ()) -> PrunedPlan:
    """The physically pruned network of an architecture (search.arch.Arch; the dict the search writes is parsed and
    validated first) and its weights. Layers named in `shared` (export/assembly.py) are assembled SHARED: each
    operation computes every alive channel of the layer, with zero weights and bias where it keeps none, and the
    operations are added at full width."""
    arch = as_arch(arch)
    weights = Weights(state_dict)
    layers = arch.layers
    alive: dict[str, set[int]] = {"input": set(range(arch.input.channels))}
    for layer in layers:
        _check_layer(layer, alive, layer.name in shared)
        alive[layer.name] = set(layer.active_out)
    all_runs = layer_runs([LayerChannels.of(layer) for layer in layers], arch.input.channels,
                          lambda layer, _split: layer.name in shared)
    skip_sources = {layer.skip for layer in layers if layer.skip}

    orders: dict[str, tuple[int, ...]] = {"input": tuple(range(arch.input.channels))}
    pending: dict[str, float] = {"input": 1.0}
    pruned = []
    for layer in layers:
        name = layer.name
        in_order = orders[layer.input]
        runs = all_runs[name]
        defer = average_deferred(layer.scale, layer.skip is not None, name in skip_sources, layer.post_activation)
        ops = []
        index_of_op: dict[int, int] = {}
        for i, op in enumerate(layer.ops):
            if not op.keep:
                continue
            index_of_op[i] = len(ops)
            ctx = OpContext(layer, i, op, runs.channels(i), in_order, pending[layer.input],
                            1.0 if defer else layer.scale, runs.pieces(i))
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
        for producers, _ in runs.runs:
            run_pieces = []
            for p in sorted(producers):
                part = seen.get(p, 0)
                seen[p] = part + 1
                run_pieces.append(Piece(SKIP if p == SKIP else index_of_op[p], part))
            pieces.append(tuple(run_pieces))
        order = runs.order
        post_slope = None
        if layer.post_activation == "prelu":
            post_slope = weights.get(f"layers.{name}.post.weight", (layer.cout,))[list(order)].astype(np.float32)
        pruned.append(PrunedLayer(name, layer.input, layer.skip, layer.in_hw, layer.stride, tuple(ops),
                                  runs.pieces(SKIP), tuple(pieces),
                                  layer.post_activation, post_slope, layer.pool, order))
        orders[name] = order
        pending[name] = layer.scale if defer else 1.0

    head = arch.head
    if alive[head.input] != set(head.active_in):
        raise FgnasError("arch.json: the head's active_in is not its input layer's active_out; re-run the search")
    classes = head.num_classes
    fc_w = weights.get("head.fc.weight", (classes, head.in_channels))[:, list(orders[head.input])]
    fc_b = weights.get("head.fc.bias", (classes,))
    plan_head = PrunedHead(head.input, (fc_w * pending[head.input]).astype(np.float32), fc_b.astype(np.float32))
    return PrunedPlan(arch.input.channels, arch.input.height, arch.input.width, tuple(pruned), plan_head)
