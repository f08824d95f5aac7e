"""Write, read and validate arch.json (docs/arch-format.md): the searched architecture that export rebuilds."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from profiler.atomic import atomic_write_text
from profiler.errors import FgnasError

ARCH_SCHEMA_VERSION = 1

_INDICES = {"type": "array", "items": {"type": "integer", "minimum": 0}}
_OP = {
    "type": "object",
    "required": ["conv_type", "kernel", "activation", "norm", "keep", "spec"],
    "properties": {
        "conv_type": {"type": "string"}, "kernel": {"type": "integer"}, "activation": {"type": "string"},
        "norm": {"type": "boolean"}, "keep": _INDICES, "spec": {"type": ["object", "null"]},
    },
}
_LAYER = {
    "type": "object",
    "required": ["name", "input", "skip", "in_hw", "stride", "cin", "cout", "post_activation", "pool", "scale",
                 "active_in", "active_out", "ops"],
    "properties": {
        "name": {"type": "string"}, "input": {"type": "string"}, "skip": {"type": ["string", "null"]},
        "in_hw": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
        "stride": {"type": "integer"}, "cin": {"type": "integer"}, "cout": {"type": "integer"},
        "post_activation": {"type": "string"}, "pool": {"type": ["object", "null"]}, "scale": {"type": "number"},
        "active_in": _INDICES, "active_out": _INDICES, "ops": {"type": "array", "items": _OP, "minItems": 1},
    },
}
ARCH_SCHEMA = {
    "type": "object",
    "required": ["schema_version", "backbone", "input", "layers", "head", "predicted"],
    "properties": {
        "schema_version": {"type": "integer", "minimum": 1},
        "backbone": {"type": "object", "required": ["name", "args"]},
        "input": {"type": "object", "required": ["channels", "height", "width"]},
        "layers": {"type": "array", "items": _LAYER, "minItems": 1},
        "head": {"type": "object", "required": ["input", "in_channels", "active_in", "num_classes"]},
        "latency_table": {"type": ["object", "null"]},
        "target": {"type": ["object", "null"]},
        "predicted": {"type": "object", "required": ["params", "flops"]},
    },
}


def validate_arch(arch: dict, source: str = "arch") -> None:
    version = arch.get("schema_version") if isinstance(arch, dict) else None
    if isinstance(version, int) and version > ARCH_SCHEMA_VERSION:
        raise FgnasError(f"{source} has schema_version {version}, newer than this fgnas reads "
                         f"({ARCH_SCHEMA_VERSION}): upgrade fgnas")
    try:
        jsonschema.validate(arch, ARCH_SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "top level"
        raise FgnasError(f"{source} is not a valid architecture file ({where}: {exc.message})") from None
    names = {"input"}
    for layer in arch["layers"]:
        if layer["input"] not in names or (layer["skip"] is not None and layer["skip"] not in names):
            raise FgnasError(f"{source}: layer {layer['name']} reads a layer that does not precede it")
        if not set(layer["active_out"]) <= set(range(layer["cout"])):
            raise FgnasError(f"{source}: layer {layer['name']} has active channels outside 0..{layer['cout'] - 1}")
        names.add(layer["name"])


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
    validate_arch(arch, str(path))
    return arch
