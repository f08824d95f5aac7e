"""Sweep spaces: which conv conditions and channel counts (and which non-conv ops) a profiling run measures.

A condition is (input size, kernel, stride, conv type, activation). A space measures the product of its factors and,
beside it, its `extras`: smaller products (e.g. ReLU6 only for the kernels and conv types MobileNetV2 uses), so that
every registered backbone x search space is covered exactly (tests/test_table_coverage.py) without multiplying the
whole product by another activation. Per condition the space samples
`samples_per_condition` channel counts spread log-uniformly over the resolution's range, alternating tile-aligned
counts (multiples of 8, 16 or 32) and misaligned ones, so the fit can see both the FLOPs trend and the tile steps.
Channel ranges per resolution follow the networks that run at that size (VGG/ResNet on CIFAR; MobileNetV2/ResNet on
ImageNet, where depthwise layers carry the 6x-expanded channels).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

from profiler.errors import FgnasError
from profiler.measure.networks import FAMILIES, NetProbe, random_nets
from profiler.ops import INVOKE_PROBE, PRICED_OPS, OpProbe
from profiler.spec import ACTIVATIONS, KERNELS, STRIDES, ConvSpec, flops

Probe = ConvSpec | OpProbe | NetProbe
CONV_TYPES = ("normal", "depthwise")
STEM_ALSO = "also"
STEM_ONLY = "only"
_ALIGNMENTS = (8, 16, 32)
SMALL_MAX = 16
_CLASSES = (10, 100, 1000)


@dataclass(frozen=True)
class Resolution:
    """An input size and the channel range convs see there.

    `stem` says whether a network's first conv (3 input channels: the image) runs at this size: STEM_ALSO makes the
    first sample of every normal-conv condition take cin=3; STEM_ONLY measures only such convs (ImageNet's 224).
    """

    hw: int
    min_channels: int
    max_channels: int
    stem: str = ""


@dataclass(frozen=True)
class Extra:
    """Conditions measured beside a space's product: these kernels x conv types x activations at every stride of the
    space and at its resolutions of `sizes` (all of them when empty)."""

    kernels: tuple[int, ...]
    conv_types: tuple[str, ...]
    activations: tuple[str, ...]
    sizes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Space:
    name: str
    resolutions: tuple[Resolution, ...]
    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    conv_types: tuple[str, ...]
    activations: tuple[str, ...]
    samples_per_condition: int
    ops: tuple[str, ...] = PRICED_OPS
    # per condition, probes with 1..SMALL_MAX output (and, normal convs, input) channels: pruned layers and first
    # convs, where a kernel's narrower tiles show
    small_samples: int = 2
    op_samples: int = 6
    max_mflops: float = 1200.0  # bigger convs are scaled down in channels: seconds per probe, little new information
    # ~0.6 ms here: long enough that timer noise stays far below the drift bound
    reference: ConvSpec = field(default=ConvSpec(28, 28, 64, 64, 3, 1, 1, "relu"))
    # whole calibration networks, (family, input size, count): the table fits what ops cost more inside a network
    # from them (profiler.measure.networks, profiler.latency.fit.NetworkModel)
    networks: tuple[tuple[str, int, int], ...] = ()
    extras: tuple[Extra, ...] = ()

    def with_overrides(self, **overrides) -> Space:
        """A copy with the given fields replaced; None means keep. Validates every value. Overriding kernels, strides,
        conv types or activations names the conditions exactly: the space's extras are dropped."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if given.keys() & {"kernels", "strides", "conv_types", "activations"}:
            given.setdefault("extras", ())
        space = replace(self, **given)
        _check(space)
        return space

    def conditions(self) -> list[tuple[Resolution, int, int, str, str]]:
        """The product of the factors, then each extra's conditions not already in it (appended, so that a space that
        gains an extra keeps every probe it had and a sweep resumes)."""
        result: dict[tuple[Resolution, int, int, str, str], None] = {}
        for kernels, conv_types, activations, sizes in [(self.kernels, self.conv_types, self.activations, ()),
                                                        *((e.kernels, e.conv_types, e.activations, e.sizes)
                                                          for e in self.extras)]:
            for res in (r for r in self.resolutions if not sizes or r.hw in sizes):
                for kernel in kernels:
                    for stride in self.strides:
                        for conv_type in conv_types:
                            if res.stem == STEM_ONLY and conv_type != "normal":
                                continue  # the stem sees the 3-channel image: only a normal conv makes sense there
                            for activation in activations:
                                result[(res, kernel, stride, conv_type, activation)] = None
        return list(result)

    def conv_probes(self, seed: int = 0) -> list[ConvSpec]:
        rng = random.Random(f"{self.name}:{seed}")
        probes: list[ConvSpec] = []
        for res, kernel, stride, conv_type, activation in self.conditions():
            couts = _channel_samples(rng, res.min_channels, res.max_channels, self.samples_per_condition)
            cins = _channel_samples(rng, res.min_channels, res.max_channels, self.samples_per_condition)
            rng.shuffle(cins)
            for i, (cin, cout) in enumerate(zip(cins, couts)):
                if res.stem == STEM_ONLY or (res.stem == STEM_ALSO and i == 0):
                    cin = 3
                if conv_type == "depthwise":
                    spec = ConvSpec.depthwise(res.hw, res.hw, cout, kernel, stride, activation)
                else:
                    spec = ConvSpec(res.hw, res.hw, cin, cout, kernel, stride, 1, activation)
                probes.append(_cap(spec, self.max_mflops))
        return list(dict.fromkeys(probes + self._small_probes(seed)))

    def _small_probes(self, seed: int) -> list[ConvSpec]:
        """`small_samples` probes per condition with few output channels (drawn apart from the others, so a space
        that gains them keeps every probe it had and a sweep resumes)."""
        rng = random.Random(f"{self.name}:small:{seed}")
        probes = []
        for res, kernel, stride, conv_type, activation in self.conditions():
            for cout in _strata(rng, 1, SMALL_MAX, self.small_samples):
                if conv_type == "depthwise":
                    # one channel would be a normal 1->1 conv (ConvSpec.conv_type), a probe of a normal condition
                    # the space may not sweep; 2 keeps the draws, so the other probes stay and a sweep resumes
                    spec = ConvSpec.depthwise(res.hw, res.hw, max(2, cout), kernel, stride, activation)
                else:
                    cin = (3 if res.stem == STEM_ONLY
                           else _channel_samples(rng, res.min_channels, res.max_channels, 1)[0])
                    spec = ConvSpec(res.hw, res.hw, cin, cout, kernel, stride, 1, activation)
                probes.append(_cap(spec, self.max_mflops))
        return probes + self._small_cin_probes(seed)

    def _small_cin_probes(self, seed: int) -> list[ConvSpec]:
        """`small_samples` normal-conv probes per condition with 1..SMALL_MAX input channels (a network's first conv
        on a grayscale or RGB image, pruned layers)."""
        rng = random.Random(f"{self.name}:small-cin:{seed}")
        probes = []
        for res, kernel, stride, conv_type, activation in self.conditions():
            if conv_type != "normal" or res.stem == STEM_ONLY:
                continue
            for cin in _strata(rng, 1, SMALL_MAX, self.small_samples):
                cout = _channel_samples(rng, res.min_channels, res.max_channels, 1)[0]
                probes.append(_cap(ConvSpec(res.hw, res.hw, cin, cout, kernel, stride, 1, activation), self.max_mflops))
        return probes

    def op_probes(self, seed: int = 0) -> list[OpProbe]:
        probes: list[OpProbe] = []
        for op in self.ops:
            rng = random.Random(f"{self.name}:ops:{op}:{seed}")  # per op: adding an op leaves the others' probes
            for i in range(self.op_samples):
                res = self.resolutions[i % len(self.resolutions)]
                c = _channel_samples(rng, res.min_channels, res.max_channels, 1)[0]
                probe = None
                while probe is None or probe in probes:  # distinct sizes, so the op's fit gets op_samples points
                    probe = _op_probe(op, res.hw, c, i)
                    c += 1
                probes.append(probe)
            probes += self._small_copy_probes(op, seed, probes)
        return probes + [INVOKE_PROBE] if probes and INVOKE_PROBE not in probes else probes

    def _small_copy_probes(self, op: str, seed: int, taken: list[OpProbe]) -> list[OpProbe]:
        """For a copy op (profiler.ops.op_elements), 2 x small_samples probes with 2..SMALL_MAX channels: the pieces
        of a pruned mixed-operation layer are a few channels each, where a copy's fixed cost dominates."""
        if OpProbe.for_feature_map(op, 4, 4, 4).elements is None:
            return []
        rng = random.Random(f"{self.name}:ops:{op}:small:{seed}")
        probes: list[OpProbe] = []
        for i, c in enumerate(_strata(rng, 2, SMALL_MAX, 2 * self.small_samples)):
            probe = _op_probe(op, self.resolutions[i % len(self.resolutions)].hw, c, i)
            if probe not in taken and probe not in probes:
                probes.append(probe)
        return probes

    def net_probes(self, seed: int = 0) -> list[NetProbe]:
        return [net for family, hw, count in self.networks
                for net in random_nets(family, hw, count, f"{self.name}:networks:{family}:{hw}:{seed}")]

    def probes(self, seed: int = 0) -> list[Probe]:
        """Every conv, op and network probe of the space, without duplicates (the sweep shuffles them)."""
        return [*self.conv_probes(seed), *self.op_probes(seed), *self.net_probes(seed)]


def _op_probe(op: str, hw: int, c: int, i: int) -> OpProbe:
    """The i-th size of `op`: classifier ops cycle through 10/100/1000 classes, the others see hw x hw x c."""
    if op == "FULLY_CONNECTED":
        return OpProbe.for_feature_map(op, 1, _CLASSES[i % len(_CLASSES)], c)
    if op == "SOFTMAX":
        return OpProbe.for_feature_map(op, 1, 1, _CLASSES[i % len(_CLASSES)] + c)
    return OpProbe.for_feature_map(op, hw, hw, c)


def _strata(rng: random.Random, lo: int, hi: int, n: int) -> list[int]:
    """n distinct counts in [lo, hi], one per log-uniform stratum (at most hi - lo + 1 of them)."""
    counts: list[int] = []
    a, b = math.log(lo), math.log(hi + 1)
    for i in range(n):
        c = min(hi, int(math.exp(rng.uniform(a + (b - a) * i / n, a + (b - a) * (i + 1) / n))))
        while c in counts and c < hi:
            c += 1
        if c not in counts:
            counts.append(c)
    return counts


def _channel_samples(rng: random.Random, lo: int, hi: int, n: int) -> list[int]:
    """n counts in [lo, hi], one per log-uniform stratum, alternately tile-aligned and misaligned."""
    counts = []
    for i in range(n):
        a, b = math.log(lo), math.log(hi)
        c = round(math.exp(rng.uniform(a + (b - a) * i / n, a + (b - a) * (i + 1) / n)))
        if i % 2 == 0:
            step = rng.choice(_ALIGNMENTS)
            c = max(step, round(c / step) * step) if step <= hi else c
        elif c % 8 == 0:
            c += rng.choice((-1, 1)) * rng.randint(1, 7)
        c = min(max(c, lo), hi)
        while c in counts and c < hi:  # tile rounding can land two strata on one count: keep n distinct points
            c += 1
        counts.append(c)
    return counts


def _cap(spec: ConvSpec, max_mflops: float) -> ConvSpec:
    """Scale channels down (keeping their ratio) until the conv is at most max_mflops."""
    excess = flops(spec) / 1e6 / max_mflops
    if excess <= 1:
        return spec
    if spec.conv_type == "depthwise" or spec.cin == 3:
        c = max(1, int(spec.cout / excess))
        return spec.with_channels(c if spec.conv_type == "depthwise" else spec.cin, c)
    factor = math.sqrt(excess)
    return spec.with_channels(max(1, int(spec.cin / factor)), max(1, int(spec.cout / factor)))


def _check(space: Space) -> None:
    if not space.resolutions:
        raise FgnasError("the space has no resolutions")
    if not space.strides or any(s not in STRIDES for s in space.strides):
        raise FgnasError(f"strides must be 1 or 2, got {list(space.strides)}")
    for kernels, conv_types, activations in [(space.kernels, space.conv_types, space.activations),
                                             *((e.kernels, e.conv_types, e.activations) for e in space.extras)]:
        if not kernels or any(k not in KERNELS for k in kernels):
            raise FgnasError(f"kernels must be in 1..11, got {list(kernels)}")
        if not conv_types or any(t not in CONV_TYPES for t in conv_types):
            raise FgnasError(f"conv types must be among {', '.join(CONV_TYPES)}, got {list(conv_types)}")
        if not activations or any(a not in ACTIVATIONS for a in activations):
            raise FgnasError(f"activations must be among {', '.join(ACTIVATIONS)}, got {list(activations)}")
    if space.small_samples < 0:
        raise FgnasError(f"small samples per condition must be at least 0, got {space.small_samples}")
    if space.samples_per_condition < 1:
        raise FgnasError(f"samples per condition must be at least 1, got {space.samples_per_condition}")
    if any(op not in PRICED_OPS for op in space.ops):
        raise FgnasError(f"ops must be among {', '.join(PRICED_OPS)}, got {list(space.ops)}")
    if any(family not in FAMILIES or count < 0 for family, _, count in space.networks):
        raise FgnasError(f"networks must be (family in {', '.join(FAMILIES)}, input size, count >= 0), got "
                         f"{list(space.networks)}")


# 2x2: VGG-16's last block on a 32 px image
_CIFAR = (Resolution(32, 16, 128, STEM_ALSO), Resolution(16, 32, 256), Resolution(8, 64, 512), Resolution(4, 64, 512),
          Resolution(2, 64, 512))
_IMAGENET = (
    Resolution(224, 16, 64, STEM_ONLY),
    Resolution(112, 16, 144),
    Resolution(56, 24, 256),
    Resolution(28, 32, 512),
    Resolution(14, 64, 960),
    Resolution(7, 128, 1280),
)
_EDSR = (Resolution(96, 16, 128),)
_CIFAR_NETS = (("vgg", 32, 6), ("mbv2", 32, 6))
_IMAGENET_NETS = (("mbv2", 224, 6),)

SPACES: dict[str, Space] = {
    "quick": Space("quick", (Resolution(32, 8, 64, STEM_ALSO), Resolution(16, 16, 128), Resolution(8, 32, 256),
                             Resolution(4, 32, 256)),
                   kernels=(1, 3, 5), strides=(1, 2), conv_types=CONV_TYPES, activations=("relu",),
                   samples_per_condition=6, op_samples=4, networks=(("vgg", 32, 2), ("mbv2", 32, 2))),
    # The paper's CIFAR search space (Table 2: kernels 1..11, normal/depthwise; ReLU, PReLU, tanh) for every CIFAR
    # backbone, and beside it what the backbones use outside Table 2: linear convs ("none": ResNet's convs before the
    # residual ADD, MobileNetV2's projections) and ReLU6 (MobileNetV2), at the kernels the search spaces give them.
    # The search asks for exact conditions (search.train), so neither is left to the table's fused-clamp fallback.
    "cifar": Space("cifar", _CIFAR, kernels=(1, 3, 5, 7, 9, 11), strides=(1, 2), conv_types=CONV_TYPES,
                   activations=("relu", "prelu", "tanh"), samples_per_condition=8, networks=_CIFAR_NETS,
                   extras=(Extra((1, 3, 5), ("normal",), ("none", "relu6")),
                           Extra((1, 3, 5), ("depthwise",), ("relu6",)))),
    # MobileNetV2/ResNet: ReLU and linear bottleneck projections ("none"), and beside them MobileNetV2-224's ReLU6
    # (stem, expansions, depthwise kernels 1/3/5 of the kernels/kernels35 spaces) and the activations space's
    # PReLU/tanh depthwise 3x3. Table 2's kernels 7..11 x PReLU/tanh are not measured at these sizes: the paper's
    # ImageNet space is kernels35, and they would take hours (tests/test_table_coverage.py).
    "imagenet": Space("imagenet", _IMAGENET, kernels=(1, 3, 5, 7), strides=(1, 2), conv_types=CONV_TYPES,
                      activations=("relu", "none"), samples_per_condition=10, networks=_IMAGENET_NETS,
                      extras=(Extra((1,), ("normal",), ("relu6",)), Extra((3,), ("normal",), ("relu6",), (224,)),
                              Extra((1, 3, 5), ("depthwise",), ("relu6",)),
                              Extra((3,), ("depthwise",), ("prelu", "tanh")))),
    "edsr": Space("edsr", _EDSR, kernels=(1, 3, 5), strides=(1,), conv_types=("normal",),
                  activations=("relu", "prelu", "tanh", "none"), samples_per_condition=10),
    "full": Space("full", (Resolution(224, 16, 64, STEM_ONLY), Resolution(96, 16, 128), *_IMAGENET[1:], *_CIFAR),
                  kernels=(1, 3, 5, 7, 9, 11), strides=(1, 2), conv_types=CONV_TYPES, activations=ACTIVATIONS,
                  samples_per_condition=10, networks=_IMAGENET_NETS + _CIFAR_NETS),
}


def get_space(name: str) -> Space:
    if name not in SPACES:
        raise FgnasError(f"unknown space {name!r}: choose one of {', '.join(SPACES)}")
    return SPACES[name]
