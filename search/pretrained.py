"""--pretrained weights onto a SearchNetwork: a checkpoint of this tool, or a published state dict in torchvision's
key layout for the backbones that have one.

A layout is a function of the built network, registered per (backbone, layout), that names the file's tensor for each
of ours (`KeyMap`). One check serves them all: every key of the file is used or declared unused, every tensor of ours
is filled or declared fresh, every shape matches; a file of another architecture or width fails in one line instead of
loading in part. A published file fills one operation per layer (the backbone's own), so it needs a search space of
one operation per layer (`channels`, FGNAS(P)).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from profiler.errors import FgnasError
from search.backbones.mobilenetv2 import INVERTED_RESIDUALS
from search.backbones.resnet import RESNET_STAGES
from search.backbones.vgg import VGG_STAGES
from search.network import SearchNetwork

BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class Unmapped:
    """Tensors of the file (key prefixes `theirs`) that are not used, and ours (`ours`) that keep their
    initialisation, for one reason."""

    theirs: tuple[str, ...]
    ours: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class KeyMap:
    """Which of a file's tensors fill which of ours."""

    source: str  # what the file is, for messages: "torchvision's resnet18"
    tensors: dict[str, str]  # ours -> the file's
    head: dict[str, str] = field(default_factory=dict)  # the same, copied only where the classes match
    bias_folds: dict[str, str] = field(default_factory=dict)  # our BN's running_mean -> the file's conv bias
    unmapped: tuple[Unmapped, ...] = ()


LayoutFn = Callable[[SearchNetwork], KeyMap]
LAYOUTS: dict[tuple[str, str], LayoutFn] = {}


def register_layout(backbone: str, layout: str) -> Callable[[LayoutFn], LayoutFn]:
    def add(fn: LayoutFn) -> LayoutFn:
        LAYOUTS[backbone, layout] = fn
        return fn

    return add


def _operation(layer: str, conv: str, bn: str) -> dict[str, str]:
    """Our layer's one operation from the file's conv and BN modules."""
    ours = f"layers.{layer}.ops.0"
    return {f"{ours}.conv.weight": f"{conv}.weight", **{f"{ours}.bn.{t}": f"{bn}.{t}" for t in BN_TENSORS}}


def _classifier(linear: str) -> dict[str, str]:
    return {"head.fc.weight": f"{linear}.weight", "head.fc.bias": f"{linear}.bias"}


@register_layout("mobilenetv2", "torchvision")
@register_layout("mobilenetv2_cifar", "torchvision")
def _mobilenetv2_torchvision(net: SearchNetwork) -> KeyMap:
    """torchvision's mobilenet_v2: features.0 the stem; features.1..17 the inverted residuals, each `conv` a Sequential
    of expand (conv, BN, ReLU6; absent where t = 1), depthwise (the same), project conv, project BN; features.18 the 1x1
    head conv; classifier.1 the Linear. The CIFAR variant differs in two strides only, which hold no weights."""
    tensors = _operation("stem", "features.0.0", "features.0.1")
    feature = 1
    for stage, (t, _, n, _) in enumerate(INVERTED_RESIDUALS, start=1):
        for i in range(n):
            block, conv = f"block{stage}_{i}", f"features.{feature}.conv"
            dw = 0 if t == 1 else 1
            if t != 1:
                tensors |= _operation(f"{block}_expand", f"{conv}.0.0", f"{conv}.0.1")
            tensors |= _operation(f"{block}_dw", f"{conv}.{dw}.0", f"{conv}.{dw}.1")
            tensors |= _operation(f"{block}_project", f"{conv}.{dw + 1}", f"{conv}.{dw + 2}")
            feature += 1
    tensors |= _operation("head_conv", f"features.{feature}.0", f"features.{feature}.1")
    return KeyMap("torchvision's mobilenet_v2", tensors, head=_classifier("classifier.1"))


@register_layout("vgg16", "torchvision")
@register_layout("vgg19", "torchvision")
def _vgg_torchvision(net: SearchNetwork) -> KeyMap:
    """torchvision's vgg16_bn / vgg19_bn: `features` holds conv (with a bias), BN and ReLU per layer and a max pool
    after every stage. The conv's bias is folded into the BN's mean: BN(conv(x) + b) with mean m is BN(conv(x)) with
    mean m - b, and in training BN subtracts the batch mean, b with it."""
    tensors, folds = {}, {}
    index = 0
    for stage, (_, convs) in enumerate(VGG_STAGES[net.backbone], start=1):
        for i in range(1, convs + 1):
            layer = f"conv{stage}_{i}"
            tensors |= _operation(layer, f"features.{index}", f"features.{index + 1}")
            folds[f"layers.{layer}.ops.0.bn.running_mean"] = f"features.{index}.bias"
            index += 3
        index += 1
    classifier = Unmapped(("classifier.",), ("head.",), "torchvision's classifier is three Linear layers on the "
                                                      "7x7x512 map, the CIFAR VGG's one Linear on the pooled 512 "
                                                      "channels")
    return KeyMap(f"torchvision's {net.backbone}_bn", tensors, bias_folds=folds, unmapped=(classifier,))


@register_layout("resnet18", "torchvision")
def _resnet18_torchvision(net: SearchNetwork) -> KeyMap:
    """torchvision's resnet18: layer{stage}.{block} holds conv1, bn1, conv2, bn2 and, where a block downsamples,
    downsample.0/.1 (the 1x1 shortcut and its BN); fc the Linear. Its stem (conv1, bn1) is a 7x7 stride-2 conv before a
    max pool, which the CIFAR ResNet-18's 3x3 stem cannot take: the stem keeps its initialisation."""
    tensors = {}
    for stage, (_, blocks) in enumerate(RESNET_STAGES["resnet18"][1], start=1):
        for block in range(blocks):
            ours, theirs = f"layer{stage}_{block}", f"layer{stage}.{block}"
            tensors |= _operation(f"{ours}_conv1", f"{theirs}.conv1", f"{theirs}.bn1")
            tensors |= _operation(f"{ours}_conv2", f"{theirs}.conv2", f"{theirs}.bn2")
            if stage > 1 and block == 0:
                tensors |= _operation(f"{ours}_shortcut", f"{theirs}.downsample.0", f"{theirs}.downsample.1")
    stem = Unmapped(("conv1.", "bn1."), ("layers.stem.",), "torchvision's 7x7 stride-2 stem cannot be the CIFAR "
                                                           "ResNet-18's 3x3 stem, which keeps its initialisation")
    return KeyMap("torchvision's resnet18", tensors, head=_classifier("fc"), unmapped=(stem,))


def _own(net: SearchNetwork) -> KeyMap:
    """A checkpoint or model.pt of this tool: the same names (its gates are dropped on reading)."""
    keys = [k for k in net.state_dict() if not k.endswith(".psi")]
    return KeyMap(f"a {net.backbone} checkpoint of this tool", {k: k for k in keys if not k.startswith("head.")},
                  head={k: k for k in keys if k.startswith("head.")})


def _keymap(net: SearchNetwork, weights: dict, what: str) -> KeyMap:
    if any(k.startswith("layers.") for k in weights):
        return _own(net)
    layouts = [fn for (backbone, _), fn in LAYOUTS.items() if backbone == net.backbone]
    if not layouts:
        have = ", ".join(sorted({backbone for backbone, _ in LAYOUTS}))
        raise FgnasError(f"{what} is not a checkpoint of this tool (no layers.* keys), and no published layout maps "
                         f"onto {net.backbone} (one does for {have})")
    wide = [node.name for node in net.nodes if len(node.ops) > 1]
    if wide:
        raise FgnasError(f"{what}: published weights fill one operation per layer, and {wide[0]} has "
                         f"{len(net.layers[wide[0]].ops)}: use --search-space channels")
    maps = [fn(net) for fn in layouts]
    return max(maps, key=lambda m: len(weights.keys() & set(m.tensors.values())))


def _first(keys: list[str]) -> str:
    return keys[0] + (f" and {len(keys) - 1} more" if len(keys) > 1 else "")


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def load_pretrained(net: SearchNetwork, weights: dict, what: str) -> str:
    """Fill `net` from a state dict (`what` names it in messages, e.g. "--pretrained m.pth"); returns one line saying
    what filled it and what did not. Raises FgnasError for a file that does not fit."""
    not_tensors = [str(k) for k, v in weights.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if not_tensors:
        raise FgnasError(f"{what} is not a state dict: {_first(not_tensors)} is not a named tensor")
    weights = {k: v for k, v in weights.items() if not k.endswith(".psi")}  # the search starts from its own gates
    keymap = _keymap(net, weights, what)
    ours = net.state_dict()
    _check_fit(net.backbone, keymap, weights, ours, what)
    state = {mine: weights[theirs] for mine, theirs in keymap.tensors.items() if theirs in weights}
    for mine, bias in keymap.bias_folds.items():
        state[mine] = state[mine] - weights[bias]
    notes = []
    head = keymap.head.items()
    if head and all(theirs in weights and _shape(weights[theirs]) == _shape(ours[mine]) for mine, theirs in head):
        state |= {mine: weights[theirs] for mine, theirs in head}
    elif head:
        theirs = weights.get(next(iter(keymap.head.values())))
        size = "none in the file" if theirs is None else f"{_shape(theirs)[0]} classes in the file"
        notes.append(f"classifier not mapped ({size}, {net.head_spec.num_classes} here)")
    notes += [f"{', '.join(p.rstrip('.') for p in u.theirs)} not mapped ({u.why})" for u in keymap.unmapped]
    net.load_state_dict(state, strict=False)  # names and shapes are checked above; gates and fresh tensors stay
    return "; ".join([f"{len(state)} tensors from {keymap.source}", *notes])


def _check_fit(backbone: str, keymap: KeyMap, weights: dict[str, Tensor], ours: dict[str, Tensor], what: str) -> None:
    """Every key of the file used or declared unused, every tensor of ours filled or declared fresh, shapes equal."""
    needed = set(keymap.tensors.values()) | set(keymap.bias_folds.values())
    # num_batches_tracked is newer than some published files (torch's BatchNorm loader also leaves it at 0 then)
    missing = sorted(k for k in needed - weights.keys() if not k.endswith("num_batches_tracked"))
    unused = tuple(prefix for u in keymap.unmapped for prefix in u.theirs)
    unexpected = sorted(k for k in weights.keys() - needed - set(keymap.head.values()) if not k.startswith(unused))
    if missing or unexpected:
        found = [f"lacks {_first(missing)}"] if missing else []
        found += [f"has {_first(unexpected)} that it does not use"] if unexpected else []
        raise FgnasError(f"{what} does not fit {backbone} read as {keymap.source}: it {', and '.join(found)}")
    fresh = tuple(prefix for u in keymap.unmapped for prefix in u.ours)
    unfilled = sorted(k for k in ours if not k.endswith(".psi") and k not in keymap.tensors and k not in keymap.head
                      and not k.startswith(fresh))
    if unfilled:
        raise FgnasError(f"{what}: {_first(unfilled)} of {backbone} has no counterpart in {keymap.source}")
    for mine, theirs in [*keymap.tensors.items(), *keymap.bias_folds.items()]:
        if theirs in weights and _shape(weights[theirs]) != _shape(ours[mine]):
            raise FgnasError(f"{what}: {theirs} is {_shape(weights[theirs])} where {backbone}'s {mine} is "
                             f"{_shape(ours[mine])} (another width or architecture)")
