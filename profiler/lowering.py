"""How a searched layer becomes TFLite ops: the rules export builds by and the search prices by, in one place.

A searched layer (search/layer.py) is M candidate operations on one input, each keeping some output channels, plus
an optional skip input, a post activation and a pool. Export (export/prune.py, export/tflite.py) writes it as:
  * per kept operation: a STRIDED_SLICE (or GATHER) when a depthwise operation reads only some of its input's
    channels; a PAD before a stride-2 conv whose SAME padding TF would place differently from PyTorch
    (`explicit_pad`); one CONV_2D / DEPTHWISE_CONV_2D on exactly the channels it keeps (a PRELU or TANH after it);
  * the assembly (`merge_ops`): output channels grouped by the set of operations (and the skip) producing them; a
    producer feeding several groups is split (SPLIT_V), a group of k producers sums them (k - 1 ADDs), the groups are
    concatenated (CONCATENATION). Or, where the layer has no skip and only normal convs and the latency table finds
    it cheaper (search.resources.layer_assembly), SHARED: every operation computes all the layer's alive channels
    and they are added at full width;
  * the pool (MAX_POOL_2D), and for the network a MEAN and a FULLY_CONNECTED head.
The search lives upstream of export and may not import it, so these rules live here, in profiler/, which both use:
search/resources.py prices the ops they give, export builds them, and `lower_arch` lists the whole exported graph,
which tests/test_lowering.py compares op by op with the .tflite export writes (benchmarks/lowering_equivalence.py
for many architectures).
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from profiler.cost import Count, conv_activations
from profiler.model_ops import ConvOp, ModelOp, OtherOp
from profiler.spec import ConvSpec

if TYPE_CHECKING:  # the typed arch.json is the search's (search/arch.py), which profiler/ does not import at run time
    from search.arch import Arch, ArchHead, ArchLayer

SPLIT, SHARED = "split", "shared"
# A depthwise operation reading some of its input's channels: export orders a tensor's channels so that the first
# two such operations of a layer read contiguous slices (reflected Gray code, export/prune.py); others may need a
# gather.
CONTIGUOUS_READERS = 2
_MERGED_ACTIVATION_OPS = {"prelu": "PRELU", "tanh": "TANH"}  # separate ops profiler.tflite_reader merges into the conv
ADD_FUSED_ACTIVATIONS = ("relu", "relu6")  # TFLite's ADD applies these itself


def explicit_pad(kernel: int, stride: int, h: int, w: int) -> bool:
    """Whether export writes this conv as PAD + VALID conv: PyTorch pads kernel // 2 on both sides, TF's SAME one
    less in front when a stride-2 conv meets an even size."""
    return stride == 2 and kernel > 1 and (h % 2 == 0 or w % 2 == 0)


def pad_pixels(spec: ConvSpec) -> int:
    """The pixels of export's explicit PAD before `spec` (its copies, profiler.ops), 0 when there is none."""
    if not explicit_pad(spec.kernel, spec.stride, spec.h, spec.w):
        return 0
    p = spec.kernel // 2
    return (spec.h + 2 * p) * (spec.w + 2 * p)


def pad_elements(spec: ConvSpec, channels: Count) -> Count:
    """Output elements of export's explicit PAD in front of `spec` reading `channels` channels (0 when none)."""
    return pad_pixels(spec) * channels


@dataclass(frozen=True)
class MergeOps:
    """How a layer's producers (its operations, and its skip input as one more) are assembled into its output:
    `groups` holds, per group of output channels produced by the same producers, (which producers, how many
    channels), in the order of their first channel. ADDs are sized in channels (times the output's H x W: elements),
    SPLIT_V and CONCATENATION in pieces (times H x W: the copies profiler.ops counts them in) and channels (times
    H x W: the elements they move)."""

    groups: tuple[tuple[tuple[bool, ...], int], ...] = ()

    @property
    def add_channels(self) -> tuple[int, ...]:
        """One entry per ADD: a group of k producers needs k - 1."""
        return tuple(n for owners, n in self.groups for _ in range(sum(owners) - 1))

    def pieces(self, producer: int) -> tuple[int, ...]:
        """The sizes of the groups `producer` feeds, in group order."""
        return tuple(n for owners, n in self.groups if owners[producer])

    @property
    def splits(self) -> tuple[tuple[int, ...], ...]:
        """One entry per SPLIT_V, in producer order: the pieces of a producer feeding several groups."""
        producers = len(self.groups[0][0]) if self.groups else 0
        return tuple(p for p in map(self.pieces, range(producers)) if len(p) > 1)

    @property
    def split_pieces(self) -> tuple[int, ...]:
        return tuple(len(p) for p in self.splits)

    @property
    def split_channels(self) -> tuple[int, ...]:
        return tuple(sum(p) for p in self.splits)

    @property
    def concat_pieces(self) -> int:
        """Groups concatenated; 0: no CONCATENATION."""
        return len(self.groups) if len(self.groups) > 1 else 0

    @property
    def concat_channels(self) -> int:
        return sum(n for _, n in self.groups) if self.concat_pieces else 0

    @property
    def overlap(self) -> int:
        """Channels computed more than once: sum_i ||G_i||_1 - ||h(sum_i G_i)||_1."""
        return sum(self.add_channels)


def merge_ops(keeps: Sequence[Sequence[float]]) -> MergeOps:
    """MergeOps of one layer from its producers' hard channel masks (one row per producer, a channel on where
    positive or true; a tensor or array is read as nested lists)."""
    rows = keeps.tolist() if hasattr(keeps, "tolist") else keeps
    groups: dict[tuple[bool, ...], int] = {}
    for column in zip(*rows):
        owners = tuple(bool(o > 0) for o in column)
        if any(owners):
            groups[owners] = groups.get(owners, 0) + 1
    return MergeOps(tuple(groups.items()))


def activation_per_run(post_activation: str, run_producers: Iterable[int]) -> bool:
    """Whether export applies a layer's post activation to each run before the concat, rather than once after it:
    where every run is an ADD (of at least two producers, `run_producers` per run) that applies the activation
    itself, so that it costs no op. Elsewhere a run that is no ADD would need an op of its own, and one op after the
    concat serves them all."""
    return post_activation in ADD_FUSED_ACTIVATIONS and all(n > 1 for n in run_producers)


def shareable(layer: ArchLayer | Mapping) -> bool:
    """A layer SHARED assembly can serve: no skip, and no operation reading its input channel by channel (a depthwise
    op cannot compute the channels another op keeps). search.resources.arch_layer_assembly still passes arch.json's
    dict."""
    if isinstance(layer, Mapping):
        return layer["skip"] is None and all(op["conv_type"] == "normal" for op in layer["ops"])
    return layer.skip is None and not layer.channelwise


# ---- the exported graph of a searched architecture -------------------------------------------------------------

@dataclass(frozen=True)
class Lowered:
    """One op of the exported graph, as profiler.tflite_reader reads it back, and the activation values the search
    counts for it when it prices what the op costs inside the network (search.resources.LatencyResource: a copy op's
    input is taken as large as its output, a depthwise conv's input as the layer's whole input)."""

    op: ModelOp
    activations: int = field(compare=False)


def _other(name: str, inputs: tuple, outputs: tuple, activations: int) -> Lowered:
    return Lowered(OtherOp(0, name, inputs, outputs), activations)


def _conv(spec: ConvSpec, depthwise: bool, cin: int, cout: int, layer_cin: int) -> Lowered:
    """`spec` on `cin` read channels with `cout` outputs; the search counts the layer's input."""
    exact = spec.with_channels(cin, cout)
    names = ("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D",)
    if spec.activation in _MERGED_ACTIVATION_OPS:
        names += (_MERGED_ACTIVATION_OPS[spec.activation],)
    return Lowered(ConvOp(0, names, exact), conv_activations(spec, layer_cin, cout))


def lower_conv(spec: ConvSpec, depthwise: bool, layer_cin: int, cout: int, select: str | None) -> list[Lowered]:
    """One kept operation: its channel selection ("slice", "gather" or None), its PAD, its conv. `depthwise` is the
    operation's kind (a depthwise spec of one channel reads as a normal conv)."""
    h, w = spec.h, spec.w
    read = cout if depthwise else layer_cin
    ops = []
    if select == "slice":
        ops.append(_other("STRIDED_SLICE", ((1, h, w, layer_cin), (4,), (4,), (4,)), ((1, h, w, read),),
                          2 * h * w * read))
    elif select == "gather":
        ops.append(_other("GATHER", ((1, h, w, layer_cin), (read,)), ((1, h, w, read),), 2 * h * w * read))
    if explicit_pad(spec.kernel, spec.stride, h, w):
        p = spec.kernel // 2
        ops.append(_other("PAD", ((1, h, w, read), (4, 2)), ((1, h + 2 * p, w + 2 * p, read),),
                          2 * pad_elements(spec, read)))
    return ops + [_conv(spec, depthwise, read, cout, layer_cin)]


def lower_assembly(h: int, w: int, merge: MergeOps) -> list[Lowered]:
    """The SPLIT_Vs, ADDs and CONCATENATION that assemble a layer's producers on an h x w output (SPLIT)."""
    ops = [_other("SPLIT_V", ((1, h, w, sum(p)), (len(p),), ()), tuple((1, h, w, n) for n in p), 2 * h * w * sum(p))
           for p in merge.splits]
    ops += [_other("ADD", ((1, h, w, n), (1, h, w, n)), ((1, h, w, n),), 3 * h * w * n) for n in merge.add_channels]
    if merge.concat_pieces:
        c = merge.concat_channels
        ops.append(_other("CONCATENATION", tuple((1, h, w, n) for _, n in merge.groups), ((1, h, w, c),),
                          2 * h * w * c))
    return ops


def lower_layer(layer: ArchLayer, shared: bool = False, skip_active: Collection[int] = ()) -> list[Lowered]:
    """The ops export writes for one arch.json layer (docs/arch-format.md), SPLIT or `shared`; `skip_active`: the
    alive channels of its skip input (the skip layer's active_out)."""
    ho, wo = layer.conv_hw
    cin = len(layer.active_in)
    alive = len(layer.active_out)
    kept = [op for op in layer.ops if op.keep]
    ops: list[Lowered] = []
    readers = 0
    for op in kept:
        depthwise = op.kind.channelwise
        cout = alive if shared else len(op.keep)
        select = None
        if depthwise and cout < cin:
            select = "slice" if readers < CONTIGUOUS_READERS else "gather"
            readers += 1
        ops += lower_conv(op.spec, depthwise, cin, cout, select)
    if shared:
        ops += [_other("ADD", ((1, ho, wo, alive), (1, ho, wo, alive)), ((1, ho, wo, alive),), 3 * ho * wo * alive)
                for _ in kept[1:]]
    else:
        channels = range(layer.cout)
        keeps = [[c in set(op.keep) for c in channels] for op in layer.ops]
        if layer.skip is not None:
            keeps.append([c in set(skip_active) for c in channels])
        if len(keeps) > 1:
            ops += lower_assembly(ho, wo, merge_ops(keeps))
    if layer.pool:
        ops.append(_other("MAX_POOL_2D", ((1, ho, wo, alive),), ((1, *layer.out_hw, alive),),
                          ho * wo * alive + math.ceil(ho / 2) * math.ceil(wo / 2) * alive))
    return ops


def lower_head(head: ArchHead, hw: tuple[int, int]) -> list[Lowered]:
    """Global average pooling (MEAN over H and W) and the classifier (FULLY_CONNECTED)."""
    c, classes = len(head.active_in), head.num_classes
    h, w = hw
    return [_other("MEAN", ((1, h, w, c), (2,)), ((1, c),), h * w * c + c),
            _other("FULLY_CONNECTED", ((1, c), (classes, c), (classes,)), ((1, classes),),
                   c + c * classes + classes + classes)]


def lower_arch(arch: Arch | Mapping, shared: Collection[str] = ()) -> list[Lowered]:
    """Every op of the exported network of an architecture (search.arch.Arch; the dict the search writes is parsed
    first), the layers named in `shared` assembled SHARED (export/assembly.py), in the order export writes them."""
    if isinstance(arch, Mapping):
        from search.arch import as_arch  # only here: the dict's callers (search side, tests) have the search loaded

        arch = as_arch(arch)
    ops: list[Lowered] = []
    active = {layer.name: layer.active_out for layer in arch.layers}
    for layer in arch.layers:
        ops += lower_layer(layer, layer.name in shared, active[layer.skip] if layer.skip else ())
    return ops + lower_head(arch.head, arch.layer(arch.head.input).out_hw)


# ---- comparing op lists ----------------------------------------------------------------------------------------

def op_key(op: ModelOp) -> tuple:
    """What two op lists must agree on, op by op: the type (a conv's TFLite ops and spec) and every tensor's shape;
    the pieces of a SPLIT_V or CONCATENATION in any order (export orders runs by channel order, the rules by group)."""
    if isinstance(op, ConvOp):
        return ("CONV", op.ops, op.spec)
    inputs, outputs = tuple(map(tuple, op.input_shapes)), tuple(map(tuple, op.output_shapes))
    if op.op == "SPLIT_V":
        outputs = tuple(sorted(outputs))
    if op.op == "CONCATENATION":
        inputs = tuple(sorted(inputs))
    return (op.op, inputs, outputs)


def differences(expected: Sequence[ModelOp], actual: Sequence[ModelOp]) -> tuple[list[tuple], list[tuple]]:
    """The op keys only `expected` has and those only `actual` has (each as often as it is missing): both empty
    when the two lists hold the same ops."""
    want, got = Counter(map(op_key, expected)), Counter(map(op_key, actual))
    return list((want - got).elements()), list((got - want).elements())
