"""Batched image augmentation as plain tensor ops (no torchvision: it has no CPU build for our torch).

Every transform takes a float batch (N, C, H, W) and a `torch.Generator`, and draws one random choice per image, so
a whole batch is augmented with a few vectorised ops and a seeded generator reproduces it exactly.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F


class Transform(Protocol):
    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


def _uniform_ints(n: int, high: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """n integers in [0, high), drawn on the CPU generator so results do not depend on the batch's device."""
    return torch.randint(0, high, (n,), generator=generator).to(device)


@dataclass(frozen=True)
class RandomCrop:
    """Zero-pad each side by `padding`, then cut a `size` x `size` window at a random offset per image."""

    size: int
    padding: int = 4

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        padded = F.pad(x, (self.padding,) * 4)
        top = _uniform_ints(n, h + 2 * self.padding - self.size + 1, generator, x.device)
        left = _uniform_ints(n, w + 2 * self.padding - self.size + 1, generator, x.device)
        offsets = torch.arange(self.size, device=x.device)
        rows = (top[:, None] + offsets)[:, :, None]  # (N, size, 1)
        cols = (left[:, None] + offsets)[:, None, :]  # (N, 1, size)
        batch = torch.arange(n, device=x.device)[:, None, None]
        # Advanced indexing on dims 0, 2, 3 puts the channel dim last: (N, size, size, C).
        return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class HorizontalFlip:
    p: float = 0.5

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flip = (torch.rand(x.shape[0], generator=generator) < self.p).to(x.device)
        return torch.where(flip[:, None, None, None], x.flip(3), x)


@dataclass(frozen=True)
class Cutout:
    """DeVries & Taylor (2017), as the paper uses it: zero a `size` x `size` square centred anywhere in the image
    (clipped at the border, so it may cover less), after normalisation."""

    size: int = 16

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        cy = _uniform_ints(n, h, generator, x.device)
        cx = _uniform_ints(n, w, generator, x.device)
        half = self.size // 2
        ys = torch.arange(h, device=x.device)
        xs = torch.arange(w, device=x.device)
        in_rows = (ys >= (cy - half)[:, None]) & (ys < (cy + half)[:, None])  # (N, H)
        in_cols = (xs >= (cx - half)[:, None]) & (xs < (cx + half)[:, None])  # (N, W)
        keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
        return x * keep[:, None].to(x.dtype)


@dataclass(frozen=True)
class Normalize:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)[None, :, None, None]
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)[None, :, None, None]
        return (x - mean) / std


@dataclass(frozen=True)
class Resize:
    """Bilinear resize to `size` x `size` (antialiased when shrinking)."""

    size: int

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.shape[-2:] == (self.size, self.size):
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)


@dataclass(frozen=True)
class Compose:
    steps: tuple[Transform, ...]

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for step in self.steps:
            x = step(x, generator)
        return x


@dataclass(frozen=True)
class Augmentation:
    """Which training augmentations a data set uses (flipping digits would change their meaning)."""

    crop_padding: int = 4
    flip: bool = True
    cutout: int = 16  # 0 turns Cutout off


def train_transform(size: int, mean: Sequence[float], std: Sequence[float], augment: Augmentation) -> Compose:
    """Resize, random crop with padding, flip, normalise, Cutout: the CIFAR recipe the paper trains with."""
    steps: list[Transform] = [Resize(size)]
    if augment.crop_padding:
        steps.append(RandomCrop(size, augment.crop_padding))
    if augment.flip:
        steps.append(HorizontalFlip())
    steps.append(Normalize(tuple(mean), tuple(std)))
    if augment.cutout:
        steps.append(Cutout(augment.cutout))
    return Compose(tuple(steps))


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> Compose:
    return Compose((Resize(size), Normalize(tuple(mean), tuple(std))))
