"""Write, read and validate arch.json (docs/arch-format.md): the searched architecture that export rebuilds."""
from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema

from profiler.atomic import atomic_write_text
from profiler.errors import FgnasError

ARCH_SCHEMA_VERSION = 1

# Channel lists are sets written ascending; their upper bounds (cout, cin) are checked in validate_arch.
_INDICES = {"type": "array", "items": {"type": "integer", "minimum": 0}, "uniqueItems": True}
_COUNT = {"type": "integer", "minimum": 1}  # a channel count, size, kernel or stride: a conv cannot have 0 of them
_OP = {
    "type": "object",
    "required": ["conv_type", "kernel", "activation", "norm", "keep", "spec"],
    "properties": {
        "conv_type": {"type": "string"}, "kernel": _COUNT, "activation": {"type": "string"},
        "norm": {"type": "boolean"}, "keep": _INDICES, "spec": {"type": ["object", "null"]},
    },
}
_LAYER = {
    "type": "object",
    "required": ["name", "input", "skip", "in_hw", "stride", "cin", "cout", "post_activation", "pool", "scale",
                 "active_in", "active_out", "ops"],
    "properties": {
        "name": {"type": "string"}, "input": {"type": "string"}, "skip": {"type": ["string", "null"]},
        "in_hw": {"type": "array", "items": _COUNT, "minItems": 2, "maxItems": 2},
        "stride": _COUNT, "cin": _COUNT, "cout": _COUNT,
        "post_activation": {"type": "string"}, "pool": {"type": ["object", "null"]},
        "scale": {"type": "number", "exclusiveMinimum": 0},
        "active_in": _INDICES, "active_out": _INDICES, "ops": {"type": "array", "items": _OP, "minItems": 1},
    },
}
ARCH_SCHEMA = {
    "type": "object",
    "required": ["schema_version", "backbone", "input", "layers", "head", "predicted"],
    "properties": {
        "schema_version": {"type": "integer", "minimum": 1},
        # create_backbone(name, **args) rebuilds the network: the arguments every family takes are typed here, so
        # that a string or negative width is refused as arch.json's fault, not met as a TypeError deep in a backbone
        "backbone": {"type": "object", "required": ["name", "args"], "properties": {
            "name": {"type": "string"},
            "args": {"type": "object", "properties": {
                "search_space": {"type": "string"}, "num_classes": _COUNT, "input_size": _COUNT,
                "in_channels": _COUNT, "width": {"type": "number", "exclusiveMinimum": 0}}}}},
        "input": {"type": "object", "required": ["channels", "height", "width"],
                  "properties": {"channels": _COUNT, "height": _COUNT, "width": _COUNT}},
        "layers": {"type": "array", "items": _LAYER, "minItems": 1},
        "head": {"type": "object", "required": ["input", "in_channels", "active_in", "num_classes"],
                 "properties": {"input": {"type": "string"}, "in_channels": _COUNT, "active_in": _INDICES,
                                "num_classes": _COUNT}},
        "latency_table": {"type": ["object", "null"]},
        "target": {"type": ["object", "null"], "properties": {"value": {"type": "number", "exclusiveMinimum": 0}}},
        "predicted": {"type": "object", "required": ["params", "flops"],
                      "properties": {"params": {"type": "number", "minimum": 0},
                                     "flops": {"type": "number", "minimum": 0},
                                     "latency_ms": {"type": ["number", "null"], "minimum": 0}}},
    },
}


def _non_finite(node: object, where: str = "") -> str | None:
    """The path of the first NaN or infinity in a JSON document (jsonschema's "number" admits them), else None."""
    if isinstance(node, float) and not math.isfinite(node):
        return where or "top level"
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        found = _non_finite(child, f"{where}/{key}" if where else str(key))
        if found:
            return found
    return None


def _outside(indices: list[int], count: int) -> bool:
    return bool(indices) and max(indices) >= count  # not set(range(count)): a forged cout of 10**12 is one compare


def validate_arch(arch: dict, source: str = "arch") -> None:
    """The one check of an architecture, read or about to be written: schema, finite numbers, channel indices
    within their layer's counts, layers reading only layers before them. Everything after it may index freely."""
    version = arch.get("schema_version") if isinstance(arch, dict) else None
    if isinstance(version, int) and version > ARCH_SCHEMA_VERSION:
        raise FgnasError(f"{source} has schema_version {version}, newer than this fgnas reads "
                         f"({ARCH_SCHEMA_VERSION}): upgrade fgnas")
    try:
        jsonschema.validate(arch, ARCH_SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "top level"
        raise FgnasError(f"{source} is not a valid architecture file ({where}: {exc.message})") from None
    bad = _non_finite(arch)
    if bad:
        raise FgnasError(f"{source} is not a valid architecture file ({bad}: NaN or infinity, not a finite number)")
    names = {"input"}
    for layer in arch["layers"]:
        name, cin, cout = layer["name"], layer["cin"], layer["cout"]
        if layer["input"] not in names or (layer["skip"] is not None and layer["skip"] not in names):
            raise FgnasError(f"{source}: layer {name} reads a layer that does not precede it")
        if _outside(layer["active_in"], cin):
            raise FgnasError(f"{source}: layer {name} has active input channels outside 0..{cin - 1}")
        if _outside(layer["active_out"], cout):
            raise FgnasError(f"{source}: layer {name} has active channels outside 0..{cout - 1}")
        for i, op in enumerate(layer["ops"]):
            if _outside(op["keep"], cout):
                raise FgnasError(f"{source}: layer {name} op {i} keeps channels outside 0..{cout - 1}")
        names.add(name)
    head = arch["head"]
    if head["input"] not in names:
        raise FgnasError(f"{source}: the head reads layer {head['input']!r}, which is not in layers")
    if _outside(head["active_in"], head["in_channels"]):
        raise FgnasError(f"{source}: the head has active channels outside 0..{head['in_channels'] - 1}")


def write_arch(path: str | Path, arch: dict) -> Path:
    """Validate, then write atomically (profiler.atomic)."""
    path = Path(path)
    validate_arch(arch, str(path))
    atomic_write_text(path, json.dumps(arch, indent=1) + "\n")
    return path


def read_arch(path: str | Path) -> dict:
    path = Path(path)
    try:
        arch = json.loads(path.read_text())
    except FileNotFoundError:
        raise FgnasError(f"no architecture file at {path}: pass the arch.json of a finished fgnas-search run") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FgnasError(f"{path} is not JSON ({exc}): pass the arch.json of a fgnas-search run") from None
    except RecursionError:  # json recurses once per nesting level: [[[[...]]]] is no architecture
        raise FgnasError(f"{path} is not an architecture file (nested too deeply)") from None
    except OSError as exc:  # a directory, or unreadable
        raise FgnasError(f"cannot read {path}: {exc.strerror}") from None
    validate_arch(arch, str(path))
    return arch
