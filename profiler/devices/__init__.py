"""Device registry: `--device NAME` maps to a factory here, never to an if-chain."""
from __future__ import annotations

from typing import Callable

from profiler.devices.base import BenchmarkSettings, Device, Measurement
from profiler.errors import FgnasError

_FACTORIES: dict[str, Callable[..., Device]] = {}


def register_device(name: str) -> Callable[[Callable[..., Device]], Callable[..., Device]]:
    def add(factory: Callable[..., Device]) -> Callable[..., Device]:
        _FACTORIES[name] = factory
        return factory

    return add


def device_names() -> list[str]:
    _load_builtin()
    return sorted(_FACTORIES)


def create_device(name: str, **options) -> Device:
    _load_builtin()
    if name not in _FACTORIES:
        raise FgnasError(f"unknown device {name!r}: choose one of {', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name](**options)


def _load_builtin() -> None:
    """Import the modules that register built-in devices (kept lazy: phones need adb-shell, host needs LiteRT)."""
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


_BUILTIN_MODULES: list[str] = ["profiler.devices.host", "profiler.devices.adb"]

__all__ = ["BenchmarkSettings", "Device", "Measurement", "register_device", "create_device", "device_names"]
