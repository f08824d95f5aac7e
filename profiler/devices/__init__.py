"""Device registry: `--device NAME` maps to a factory here, never to an if-chain."""
from __future__ import annotations

from typing import Callable

from profiler.devices.base import BenchmarkSettings, Device, Measurement
from profiler.errors import FgnasError
from profiler.registry import registrar

_FACTORIES: dict[str, Callable[..., Device]] = {}


def register_device(name: str) -> Callable[[Callable[..., Device]], Callable[..., Device]]:
    return registrar(_FACTORIES, name)


def device_names() -> list[str]:
    _load_builtin()
    return sorted(_FACTORIES)


def create_device(name: str, **options) -> Device:
    _load_builtin()
    if name not in _FACTORIES:
        raise FgnasError(f"unknown device {name!r}: choose one of {', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name](**options)


def add_device_arguments(parser, farm: bool = False, default: str | None = None,
                         device_help: str = "device name, e.g. host or pixel1 (see profiler.devices)") -> None:
    """The options every CLI that measures on a device takes: --device (required unless a default is given) and
    the phone's --serial (repeatable for a farm), --benchmark-binary and --force."""
    parser.add_argument("--device", required=default is None, default=default, help=device_help)
    if farm:
        parser.add_argument("--serial", action="append", help="a phone's ADB serial or HOST:PORT; repeat for a farm")
    else:
        parser.add_argument("--serial", help="a phone's ADB serial or HOST:PORT")
    parser.add_argument("--benchmark-binary", help="path of TFLite's benchmark_model for phones")
    parser.add_argument("--force", action="store_true", help="skip a phone's readiness checks")


def device_options(args) -> dict:
    """create_device keyword arguments from add_device_arguments' options; only those given, so host accepts them.
    A farm's repeated --serial is left to the caller, which creates one device per serial."""
    given = {"benchmark_binary": args.benchmark_binary, "force": args.force or None}
    if not isinstance(args.serial, list):
        given["serial"] = args.serial
    return {k: v for k, v in given.items() if v is not None}


def _load_builtin() -> None:
    """Import the modules that register built-in devices (kept lazy: phones need adb-shell, host needs LiteRT)."""
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


_BUILTIN_MODULES: list[str] = ["profiler.devices.host", "profiler.devices.adb"]

__all__ = ["BenchmarkSettings", "Device", "Measurement", "register_device", "create_device", "device_names",
           "add_device_arguments", "device_options"]
