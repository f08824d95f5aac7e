"""Whole networks as data: VGG-like and MobileNetV2-like stacks of pruned-looking widths.

A table prices a network as the sum of its ops, each measured alone. Inside a network an op pays more: the other ops
have evicted its weights from the caches, and activations bigger than a cache come from a slower one (large
networks more than small ones; measured figures in docs/benchmarks.md, "In-network cost"). So a sweep also measures a
few whole networks of its space (`Space.networks`) and the table fits that difference
(profiler.latency.fit.fit_network); benchmarks/latency_table.py draws its test networks from the same families with
other seeds. """
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass

FAMILIES = ("vgg", "mbv2")
# MobileNetV2's stages: expansion t, output channels c, blocks n, first stride s
_MBV2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
_VGG = ((64, 2), (128, 2), (256, 3), (512, 3))
SMALL_INPUT = 32  # up to this input size a network is CIFAR-shaped: no stem stride, 3 VGG stages, 10 classes


@dataclass(frozen=True)
class NetProbe:
    """One network: its family, input size and per-layer channel counts.

    vgg layers: (cout, max-pool after); mbv2 layers: (expanded channels, output channels, stride), plus the stem's
    and the head's channels.
    """

    family: str
    hw: int
    layers: tuple[tuple[int, ...], ...]
    stem: int = 0
    head: int = 0
    classes: int = 10

    def to_dict(self) -> dict:
        return {"family": self.family, "hw": self.hw, "layers": [list(layer) for layer in self.layers],
                "stem": self.stem, "head": self.head, "classes": self.classes}

    @classmethod
    def from_dict(cls, d: dict) -> NetProbe:
        return cls(d["family"], d["hw"], tuple(tuple(layer) for layer in d["layers"]), d["stem"], d["head"],
                   d["classes"])

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps({"net": self.to_dict()}, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        return f"{self.family}-{self.hw}px-{len(self.layers)}L-{self.config_hash()[:8]}"


def _jitter(rng: random.Random, channels: float, low: float = 0.55) -> int:
    """A pruned-looking channel count: the base width times a random keep ratio (rarely tile-aligned)."""
    return max(4, int(round(channels * rng.uniform(low, 1.0))))


def vgg_net(rng: random.Random, hw: int) -> NetProbe:
    width = rng.uniform(0.25, 1.0)
    layers = []
    for base, count in _VGG[: 3 if hw <= SMALL_INPUT else 4]:
        for i in range(count):
            layers.append((_jitter(rng, base * width), int(i == count - 1)))
    return NetProbe("vgg", hw, tuple(layers), classes=10 if hw <= SMALL_INPUT else 1000)


def mbv2_net(rng: random.Random, hw: int) -> NetProbe:
    width = rng.uniform(0.35, 1.0)
    stem = _jitter(rng, 32 * width, 0.7)
    cin, layers = stem, []
    for i, (t, c, n, s) in enumerate(_MBV2):
        out = _jitter(rng, c * width, 0.7)  # one count per stage, so its stride-1 blocks keep their residual ADD
        for j in range(n):
            stride = s if j == 0 else 1
            if hw <= SMALL_INPUT and i == 1:
                stride = 1  # the CIFAR variant keeps its input size through the first stages
            layers.append((_jitter(rng, cin * t) if t > 1 else cin, out, stride))
            cin = out
    return NetProbe("mbv2", hw, tuple(layers), stem, _jitter(rng, 1280 * width, 0.7),
                    10 if hw <= SMALL_INPUT else 1000)


GENERATORS = {"vgg": vgg_net, "mbv2": mbv2_net}


def random_nets(family: str, hw: int, count: int, seed: str) -> list[NetProbe]:
    """`count` networks of `family` at input size `hw`, drawn from `seed` (the same seed, the same networks)."""
    rng = random.Random(seed)
    return [GENERATORS[family](rng, hw) for _ in range(count)]
