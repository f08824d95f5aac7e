"""How a searched layer becomes TFLite ops: the rules export builds by and the search prices by, in one place.

A searched layer (search/layer.py) is M candidate operations on one input, each keeping some output channels, plus
an optional skip input, a post activation and a pool. Export (export/prune.py, export/tflite.py) writes it as:
  * per kept operation: a STRIDED_SLICE (or GATHER) when a depthwise operation reads only some of its input's
    channels, or all of them in another order; a PAD before a stride-2 conv whose SAME padding TF would place
    differently from PyTorch (`explicit_pad`), one for the operations reading the same channels with the same
    kernel (`operation_reads`); one CONV_2D / DEPTHWISE_CONV_2D on exactly the channels it keeps (a PRELU or TANH
    after it), and a MUL by the layer's 1/M where the activation does not let it fold (`scales_output`);
  * the assembly (`MergeOps`), run by run in the channel order profiler.channel_order chooses: a producer (an
    operation, or the skip) feeding several runs is split (SPLIT_V), a run of k producers sums them (k - 1 ADDs),
    the runs are concatenated (CONCATENATION). Or, where the layer has no skip and only normal convs and the latency
    table finds it cheaper (search.resources.layer_assembly), SHARED: one run, every operation computing all the
    layer's alive channels, added at full width;
  * the post activation, where it is an op of its own (`post_activation_op`);
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

from profiler.channel_order import LayerChannels, LayerRuns, Selection, layer_runs, selection
from profiler.cost import Count, conv_activations
from profiler.model_ops import ConvOp, ModelOp, OtherOp
from profiler.spec import ConvSpec

if TYPE_CHECKING:  # the typed arch.json is the search's (search/arch.py), which profiler/ does not import at run time
    from search.arch import Arch, ArchHead, ArchLayer

SPLIT, SHARED = "split", "shared"
# Separate ops profiler.latency.tflite_reader merges into the conv
_MERGED_ACTIVATION_OPS = {"prelu": "PRELU", "tanh": "TANH"}
# A layer's post activation (after its skip add) as an op of its own; TFLite's ADD applies relu and relu6 itself.
POST_ACTIVATION_OPS = {"relu": "RELU", "relu6": "RELU6", "prelu": "PRELU", "tanh": "TANH"}
ADD_FUSED_ACTIVATIONS = ("relu", "relu6")
HOMOGENEOUS_ACTIVATIONS = ("none", "relu", "prelu")  # act(s * z) == s * act(z) for s > 0: a scale folds through


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
    """How a layer's producers (its operations by index, and its skip input as SKIP) are assembled into its output,
    run by run as export writes it (profiler.channel_order): `runs` holds, per run, (which producers, how many
    channels). ADDs are sized in channels (times the output's H x W: elements), SPLIT_V and CONCATENATION in pieces
    (times H x W: the copies profiler.ops counts them in) and channels (times H x W: the elements they move)."""

    runs: tuple[tuple[frozenset[int], int], ...] = ()

    @classmethod
    def of(cls, runs: LayerRuns) -> MergeOps:
        return cls(tuple((producers, len(run)) for producers, run in runs.runs))

    @property
    def add_channels(self) -> tuple[int, ...]:
        """One entry per ADD: a run of k producers needs k - 1."""
        return tuple(n for producers, n in self.runs for _ in range(len(producers) - 1))

    def pieces(self, producer: int) -> tuple[int, ...]:
        """The sizes of the runs `producer` feeds, in run order."""
        return tuple(n for producers, n in self.runs if producer in producers)

    @property
    def splits(self) -> tuple[tuple[int, ...], ...]:
        """One entry per SPLIT_V: the pieces of a producer feeding several runs."""
        producers = sorted(set().union(*(p for p, _ in self.runs)))
        return tuple(p for p in map(self.pieces, producers) if len(p) > 1)

    @property
    def split_pieces(self) -> tuple[int, ...]:
        return tuple(len(p) for p in self.splits)

    @property
    def split_channels(self) -> tuple[int, ...]:
        return tuple(sum(p) for p in self.splits)

    @property
    def concat_pieces(self) -> int:
        """Runs concatenated; 0: no CONCATENATION."""
        return len(self.runs) if len(self.runs) > 1 else 0

    @property
    def concat_channels(self) -> int:
        return sum(n for _, n in self.runs) if self.concat_pieces else 0

    @property
    def overlap(self) -> int:
        """Channels computed more than once: sum_i ||G_i||_1 - ||h(sum_i G_i)||_1."""
        return sum(self.add_channels)


def activation_per_run(post_activation: str, run_producers: Iterable[int]) -> bool:
    """Whether export applies a layer's post activation to each run before the concat, rather than once after it:
    where every run is an ADD (of at least two producers, `run_producers` per run) that applies the activation
    itself, so that it costs no op. Elsewhere a run that is no ADD would need an op of its own, and one op after the
    concat serves them all."""
    return post_activation in ADD_FUSED_ACTIVATIONS and all(n > 1 for n in run_producers)


def post_activation_op(post_activation: str, merge: MergeOps) -> str | None:
    """The op a layer's post activation becomes after its assembly (`POST_ACTIVATION_OPS`), None where it costs none
    (no activation, or fused into every run's ADD: `activation_per_run`). Not for a layer whose output is one conv's
    alone (no skip, one operation), whose activation TF's converter would fuse into the conv: no backbone has a post
    activation without a skip."""
    if post_activation == "none" or activation_per_run(post_activation, (len(p) for p, _ in merge.runs)):
        return None
    return POST_ACTIVATION_OPS[post_activation]


def shareable(layer: ArchLayer) -> bool:
    """A layer SHARED assembly can serve: no skip, and no operation reading its input channel by channel (a depthwise
    op cannot compute the channels another op keeps)."""
    return layer.skip is None and not layer.channelwise


# ---- the exported graph of a searched architecture -------------------------------------------------------------

@dataclass(frozen=True)
class Lowered:
    """One op of the exported graph, as profiler.latency.tflite_reader reads it back, and the activation values the
    search counts for it when it prices what the op costs inside the network (search.resources.LatencyResource: a copy
    op's input is taken as large as its output, a depthwise conv's input as the layer's whole input)."""

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


def average_deferred(scale: float, skip: bool, skip_source: bool, post_activation: str) -> bool:
    """Whether export leaves a layer's 1/M average (`scale`) to its consumers (convs and the head are linear):
    where nothing adds the layer's output unscaled to something else (it has no skip input and is none) and its
    post activation lets a scale through. Otherwise each operation folds it into its weights or, after an activation
    that does not let it through, multiplies by it (`scales_output`)."""
    return scale != 1.0 and not skip and not skip_source and post_activation in HOMOGENEOUS_ACTIVATIONS


def scales_output(activation: str, scale: float) -> bool:
    """Whether an operation's output is multiplied by its layer's undeferred 1/M `scale` in an op of its own (MUL):
    where its activation does not let the scale fold into the conv's weights (tanh, relu6)."""
    return scale != 1.0 and activation not in HOMOGENEOUS_ACTIVATIONS


@dataclass(frozen=True)
class Read:
    """How a kept operation reads its layer's input: `select`, the selection op it writes ("all": none, its input
    whole, or the same channels an earlier operation selected), and whether it writes an explicit PAD of its own.
    TF's converter merges identical ops on one tensor, so operations reading the same channels with the same kernel
    share one selection and one PAD."""

    select: str = "all"
    pad: bool = False


def operation_reads(layer: ArchLayer | LayerChannels, runs: LayerRuns, in_order: Sequence[int],
                    specs: Sequence[ConvSpec | None]) -> dict[int, Read]:
    """The Read of each kept operation of a layer, by operation index: where a depthwise operation's channels sit in
    its input's order (`in_order`) and which selections and PADs earlier operations already wrote. `specs`: each
    operation's ConvSpec (kernel, stride and input size are read)."""
    if not isinstance(layer, LayerChannels):
        layer = LayerChannels.of(layer)
    position = {c: i for i, c in enumerate(in_order)} if any(layer.channelwise) else {}
    sources: set[tuple] = set()
    pads: set[tuple] = set()
    reads = {}
    for i, (keep, channelwise) in enumerate(zip(layer.keeps, layer.channelwise)):
        if not keep:
            continue
        chosen = selection([position[c] for c in runs.channels(i)], len(in_order)) if channelwise else Selection()
        source = (chosen.kind, chosen.indices)  # the tensor the conv reads
        spec = specs[i]
        padded = explicit_pad(spec.kernel, spec.stride, spec.h, spec.w)
        reads[i] = Read(chosen.kind if source not in sources else "all", padded and (source, spec.kernel) not in pads)
        sources.add(source)
        pads |= {(source, spec.kernel)} if padded else set()
    return reads


def lower_conv(spec: ConvSpec, depthwise: bool, layer_cin: int, cout: int, read: Read = Read(),
               scale: float = 1.0) -> list[Lowered]:
    """One kept operation: its channel selection and its PAD (`read`), its conv, and its MUL by the layer's 1/M
    `scale` where that does not fold (`scales_output`). `depthwise` is the operation's kind (a depthwise spec of
    one channel reads as a normal conv)."""
    h, w = spec.h, spec.w
    channels = cout if depthwise else layer_cin
    ops = []
    if read.select == "slice":
        ops.append(_other("STRIDED_SLICE", ((1, h, w, layer_cin), (4,), (4,), (4,)), ((1, h, w, channels),),
                          2 * h * w * channels))
    elif read.select == "gather":
        ops.append(_other("GATHER", ((1, h, w, layer_cin), (channels,)), ((1, h, w, channels),),
                          2 * h * w * channels))
    if read.pad:
        p = spec.kernel // 2
        ops.append(_other("PAD", ((1, h, w, channels), (4, 2)), ((1, h + 2 * p, w + 2 * p, channels),),
                          2 * pad_elements(spec, channels)))
    ops.append(_conv(spec, depthwise, channels, cout, layer_cin))
    if scales_output(spec.activation, scale):
        out = (1, -(-h // spec.stride), -(-w // spec.stride), cout)
        ops.append(_other("MUL", (out, ()), (out,), 2 * math.prod(out)))
    return ops


def lower_assembly(h: int, w: int, merge: MergeOps) -> list[Lowered]:
    """The SPLIT_Vs, ADDs and CONCATENATION that assemble a layer's producers on an h x w output."""
    ops = [_other("SPLIT_V", ((1, h, w, sum(p)), (len(p),), ()), tuple((1, h, w, n) for n in p), 2 * h * w * sum(p))
           for p in merge.splits]
    ops += [_other("ADD", ((1, h, w, n), (1, h, w, n)), ((1, h, w, n),), 3 * h * w * n) for n in merge.add_channels]
    if merge.concat_pieces:
        c = merge.concat_channels
        ops.append(_other("CONCATENATION", tuple((1, h, w, n) for _, n in merge.runs), ((1, h, w, c),),
                          2 * h * w * c))
    return ops


def _post_activation(op: str, h: int, w: int, channels: int) -> Lowered:
    """A post activation's own op on an h x w output; PRELU also reads its per-channel slopes."""
    shape = (1, h, w, channels)
    slopes = ((1, 1, channels),) if op == "PRELU" else ()
    return _other(op, (shape, *slopes), (shape,), 2 * h * w * channels)


def lower_layer(layer: ArchLayer, runs: LayerRuns, in_order: Sequence[int], skip_source: bool = False
                ) -> list[Lowered]:
    """The ops export writes for one arch.json layer (docs/arch-format.md) assembled from `runs`
    (profiler.channel_order.layer_runs), its input's channels in `in_order`; `skip_source`: whether a later layer
    adds its output (average_deferred)."""
    ho, wo = layer.conv_hw
    cin = len(layer.active_in)
    alive = len(layer.active_out)
    reads = operation_reads(layer, runs, in_order, [op.spec for op in layer.ops])
    scale = 1.0 if average_deferred(layer.scale, layer.skip is not None, skip_source, layer.post_activation) \
        else layer.scale
    ops: list[Lowered] = []
    for i, op in enumerate(layer.ops):
        if op.keep:
            ops += lower_conv(op.spec, op.kind.channelwise, cin, len(runs.channels(i)), reads[i], scale)
    merge = MergeOps.of(runs)
    ops += lower_assembly(ho, wo, merge)
    post = post_activation_op(layer.post_activation, merge)
    if post is not None:
        ops.append(_post_activation(post, ho, wo, alive))
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
    runs = layer_runs([LayerChannels.of(layer) for layer in arch.layers], arch.input.channels,
                      lambda layer, _split: layer.name in shared)
    orders = {"input": tuple(range(arch.input.channels)), **{name: r.order for name, r in runs.items()}}
    skip_sources = {layer.skip for layer in arch.layers if layer.skip}
    ops: list[Lowered] = []
    for layer in arch.layers:
        ops += lower_layer(layer, runs[layer.name], orders[layer.input], layer.name in skip_sources)
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
