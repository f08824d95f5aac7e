"""The one idiom behind every registry (devices, backbones, operations, pruners): a decorator that files an item."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def registrar(registry: dict[str, T], name: str) -> Callable[[T], T]:
    """A decorator that stores what it decorates under `name` in `registry` and returns it unchanged."""

    def add(item: T) -> T:
        registry[name] = item
        return item

    return add
