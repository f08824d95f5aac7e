"""Device registry: `--device NAME` maps to a factory here, never to an if-chain."""
from __future__ import annotations

from collections.abc import Callable

from profiler.errors import FgnasError
from profiler.measure.devices.base import BenchmarkSettings, Device, Measurement
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
                         device_help: str = "device name, e.g. host or pixel1 (see profiler.measure.devices)") -> None:
    """The options every CLI that measures on a device takes: --device (required unless a default is given) and
    the phone's --serial (repeatable for a farm), --benchmark-binary and --force."""
    parser.add_argument("--device", required=default is None, default=default, help=device_help)
    if farm:
        parser.add_argument("--serial", action="append", help="a phone's ADB serial or HOST:PORT; repeat for a farm")
    else:
        parser.add_argument("--serial", help="a phone's ADB serial or HOST:PORT")
    parser.add_argument("--benchmark-binary", help="path of TFLite's benchmark_model for phones")
    parser.add_argument("--force", action="store_true", help="skip a phone's readiness checks")


def add_timing_arguments(parser) -> None:
    """--runs, --warmup and --threads; unset ones come from the device (a phone's profile, else BenchmarkSettings)."""
    parser.add_argument("--runs", type=int, help=f"timed runs per measurement (default: the device's; host "
                                                 f"{BenchmarkSettings.runs})")
    parser.add_argument("--warmup", type=int, help=f"untimed runs first (default: the device's; host "
                                                   f"{BenchmarkSettings.warmup})")
    parser.add_argument("--threads", type=int, help=f"runtime threads (default: the device's; host "
                                                    f"{BenchmarkSettings.threads})")


def timing_settings(args, defaults: BenchmarkSettings = BenchmarkSettings()) -> BenchmarkSettings:
    """`defaults` (a device's default_settings) with add_timing_arguments' given values; FgnasError when one is out
    of range. Call it once with the plain defaults before connecting to a device, so bad input fails at once."""
    settings = defaults.overridden(args.runs, args.warmup, args.threads)
    if min(settings.runs, settings.threads) < 1 or settings.warmup < 0:
        raise FgnasError("--runs and --threads must be at least 1 and --warmup at least 0")
    return settings


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


_BUILTIN_MODULES: list[str] = ["profiler.measure.devices.host", "profiler.measure.devices.adb"]

__all__ = ["BenchmarkSettings", "Device", "Measurement", "register_device", "create_device", "device_names",
           "add_device_arguments", "device_options", "add_timing_arguments", "timing_settings"]
