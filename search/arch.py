"""Write, read and validate arch.json (docs/arch-format.md): the searched architecture that export rebuilds.

The file is a dict on disk and where the search writes it (search.network.to_arch); readers get it as the frozen
dataclasses below (`Arch.from_dict`, `load_arch`), parsed and validated once, at the boundary, so that nothing after it
indexes dicts or re-checks. `to_dict` gives the dict back unchanged (unknown keys included), so the format on disk
never depends on these classes.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema

from profiler.atomic import atomic_write_text
from profiler.errors import FgnasError
from profiler.registry import registrar
from profiler.spec import ConvSpec

ARCH_SCHEMA_VERSION = 1

# Channel lists are sets written ascending; their upper bounds (cout, cin) are checked in Arch.from_dict.
_INDICES = {"type": "array", "items": {"type": "integer", "minimum": 0}, "uniqueItems": True}
_COUNT = {"type": "integer", "minimum": 1}  # a channel count, size, kernel or stride: a conv cannot have 0 of them
_SPEC_FIELDS = ("h", "w", "cin", "cout", "kernel", "stride", "groups")
_OP = {
    "type": "object",
    "required": ["conv_type", "kernel", "activation", "norm", "keep", "spec"],
    "properties": {
        "conv_type": {"type": "string"}, "kernel": _COUNT, "activation": {"type": "string"},
        "norm": {"type": "boolean"}, "keep": _INDICES,
        # profiler.spec.ConvSpec of the pruned op; its own rules (kernel, stride, groups) are checked by building it
        "spec": {"type": ["object", "null"], "required": [*_SPEC_FIELDS, "activation"],
                 "properties": {**{k: _COUNT for k in _SPEC_FIELDS}, "activation": {"type": "string"}}},
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
        "post_activation": {"type": "string"},
        "pool": {"type": ["object", "null"], "required": ["kind", "kernel", "stride"],
                 "properties": {"kind": {"type": "string"}, "kernel": _COUNT, "stride": _COUNT}},
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
        "latency_table": {"type": ["object", "null"],
                          "properties": {"path": {"type": ["string", "null"]},
                                         "content_hash": {"type": ["string", "null"]}}},
        "target": {"type": ["object", "null"], "properties": {"value": {"type": "number", "exclusiveMinimum": 0}}},
        "predicted": {"type": "object", "required": ["params", "flops"],
                      "properties": {"params": {"type": "number", "minimum": 0},
                                     "flops": {"type": "number", "minimum": 0},
                                     "latency_ms": {"type": ["number", "null"], "minimum": 0}}},
        "search": {"type": "object"},
    },
}


# ---- conv kinds ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConvKind:
    """What export, the lowering rules and the summaries need to know of an operation's conv type, so that they ask
    the kind instead of comparing its name (search/operations.py's CONV_LAYERS builds the module; export/prune.py's
    OP_PRUNERS prunes it)."""

    # Output channel c is computed from input channel c alone (depthwise): an op keeps only channels whose input is
    # alive, reads just those (a slice or gather of its input), cannot compute the channels another op keeps
    # (no SHARED assembly) and its channels cannot be rounded apart from its input's.
    channelwise: bool
    label: str  # the plots' name of the kind: conv3x3, dw3x3
    short: str  # the search summary's: k3, dw3


CONV_KINDS: dict[str, ConvKind] = {}


def register_conv_kind(name: str, kind: ConvKind) -> None:
    registrar(CONV_KINDS, name)(kind)


register_conv_kind("normal", ConvKind(channelwise=False, label="conv", short="k"))
register_conv_kind("depthwise", ConvKind(channelwise=True, label="dw", short="dw"))


# ---- the typed architecture ------------------------------------------------------------------------------------

def _frozen(d: Mapping) -> Mapping[str, Any]:
    """A read-only copy (the dataclasses are frozen; a dict field would still be mutable)."""
    return MappingProxyType(json.loads(json.dumps(dict(d))))


def _plain(m: Mapping) -> dict:
    return json.loads(json.dumps(dict(m)))


def _extra(d: Mapping, known: tuple[str, ...]) -> Mapping[str, Any]:
    """The keys of `d` a class does not type: kept, so that to_dict gives the file's dict back."""
    return _frozen({k: v for k, v in d.items() if k not in known})


@dataclass(frozen=True)
class Pool:
    kind: str
    kernel: int
    stride: int
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _KEYS = ("kind", "kernel", "stride")

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        """VALID pooling."""
        return (h - self.kernel) // self.stride + 1, (w - self.kernel) // self.stride + 1

    @classmethod
    def from_dict(cls, d: Mapping) -> Pool:
        return cls(d["kind"], d["kernel"], d["stride"], _extra(d, cls._KEYS))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "kernel": self.kernel, "stride": self.stride, **_plain(self.extra)}


@dataclass(frozen=True)
class ArchOp:
    """One candidate operation of a layer and the output channels it keeps (docs/arch-format.md)."""

    conv_type: str
    kernel: int
    activation: str
    norm: bool
    keep: tuple[int, ...]  # output channels (0..cout-1) this operation produces; () = op removed
    spec: ConvSpec | None  # the pruned op; None when keep is empty
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _KEYS = ("conv_type", "kernel", "activation", "norm", "keep", "spec")

    @property
    def kind(self) -> ConvKind:
        return CONV_KINDS[self.conv_type]  # a registered kind: Arch.from_dict refuses others

    @classmethod
    def from_dict(cls, d: Mapping) -> ArchOp:
        spec = ConvSpec.from_dict(d["spec"]) if d["spec"] is not None else None
        return cls(d["conv_type"], d["kernel"], d["activation"], d["norm"], tuple(d["keep"]), spec,
                   _extra(d, cls._KEYS))

    def to_dict(self) -> dict:
        return {"conv_type": self.conv_type, "kernel": self.kernel, "activation": self.activation, "norm": self.norm,
                "keep": list(self.keep), "spec": self.spec.to_dict() if self.spec is not None else None,
                **_plain(self.extra)}


@dataclass(frozen=True)
class ArchLayer:
    """One searchable layer: M operations on one input, an optional skip add, a post activation and a pool."""

    name: str
    input: str  # a previous layer's name, or "input"
    skip: str | None
    in_hw: tuple[int, int]
    stride: int
    cin: int
    cout: int
    post_activation: str
    pool: Pool | None
    scale: float  # 1/M
    active_in: tuple[int, ...]
    active_out: tuple[int, ...]
    ops: tuple[ArchOp, ...]
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _KEYS = ("name", "input", "skip", "in_hw", "stride", "cin", "cout", "post_activation", "pool", "scale",
             "active_in", "active_out", "ops")

    @property
    def conv_hw(self) -> tuple[int, int]:
        """The convs' output size: SAME padding, ceil(in / stride)."""
        return math.ceil(self.in_hw[0] / self.stride), math.ceil(self.in_hw[1] / self.stride)

    @property
    def out_hw(self) -> tuple[int, int]:
        """The layer's output size, after its pool."""
        return self.pool.out_hw(*self.conv_hw) if self.pool else self.conv_hw

    @property
    def channelwise(self) -> bool:
        """Whether an operation of this layer reads its input channel by channel (ConvKind.channelwise)."""
        return any(op.kind.channelwise for op in self.ops)

    @classmethod
    def from_dict(cls, d: Mapping) -> ArchLayer:
        return cls(d["name"], d["input"], d["skip"], tuple(d["in_hw"]), d["stride"], d["cin"], d["cout"],
                   d["post_activation"], Pool.from_dict(d["pool"]) if d["pool"] is not None else None, d["scale"],
                   tuple(d["active_in"]), tuple(d["active_out"]), tuple(ArchOp.from_dict(op) for op in d["ops"]),
                   _extra(d, cls._KEYS))

    def to_dict(self) -> dict:
        return {"name": self.name, "input": self.input, "skip": self.skip, "in_hw": list(self.in_hw),
                "stride": self.stride, "cin": self.cin, "cout": self.cout, "post_activation": self.post_activation,
                "pool": self.pool.to_dict() if self.pool else None, "scale": self.scale,
                "active_in": list(self.active_in), "active_out": list(self.active_out),
                "ops": [op.to_dict() for op in self.ops], **_plain(self.extra)}


@dataclass(frozen=True)
class ArchHead:
    """Global average pooling over the last layer's alive channels, then the classifier."""

    input: str
    in_channels: int
    active_in: tuple[int, ...]
    num_classes: int
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # pool, dropout (training)

    _KEYS = ("input", "in_channels", "active_in", "num_classes")

    @classmethod
    def from_dict(cls, d: Mapping) -> ArchHead:
        return cls(d["input"], d["in_channels"], tuple(d["active_in"]), d["num_classes"], _extra(d, cls._KEYS))

    def to_dict(self) -> dict:
        return {"input": self.input, "in_channels": self.in_channels, "active_in": list(self.active_in),
                "num_classes": self.num_classes, **_plain(self.extra)}


@dataclass(frozen=True)
class Backbone:
    """create_backbone(name, **args) rebuilds the unpruned SearchNetwork."""

    name: str
    args: Mapping[str, Any]

    def to_dict(self) -> dict:
        return {"name": self.name, "args": _plain(self.args)}


@dataclass(frozen=True)
class InputShape:
    channels: int
    height: int
    width: int

    def to_dict(self) -> dict:
        return {"channels": self.channels, "height": self.height, "width": self.width}


@dataclass(frozen=True)
class TableRef:
    """The latency table the search priced with; `record` is the whole block (device, device check, ...)."""

    path: str | None
    table_version: Any
    content_hash: str | None
    record: Mapping[str, Any] = field(compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: Mapping) -> TableRef:
        return cls(d.get("path"), d.get("table_version"), d.get("content_hash"), _frozen(d))

    def to_dict(self) -> dict:
        return _plain(self.record)


@dataclass(frozen=True)
class Predicted:
    """The search's prediction for the pruned network (exact params and FLOPs; latency_ms None without a table)."""

    params: float
    flops: float
    latency_ms: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    _KEYS = ("params", "flops", "latency_ms")

    @classmethod
    def from_dict(cls, d: Mapping) -> Predicted:
        return cls(d["params"], d["flops"], d.get("latency_ms"), _extra(d, cls._KEYS))

    def to_dict(self) -> dict:
        return {"params": self.params, "flops": self.flops, "latency_ms": self.latency_ms, **_plain(self.extra)}


@dataclass(frozen=True, eq=False)
class Arch:
    """arch.json, parsed and validated (`from_dict`); `to_dict` gives the same dict back."""

    schema_version: int
    backbone: Backbone
    input: InputShape
    layers: tuple[ArchLayer, ...]
    head: ArchHead
    predicted: Predicted
    latency_table: TableRef | None = None
    target: Mapping[str, Any] | None = None  # the search's target as the user wrote it: reported, not acted on
    search: Mapping[str, Any] | None = None  # how the search ran (data, accuracy, seed, ...): reported
    created: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    _KEYS = ("schema_version", "created", "backbone", "input", "layers", "head", "latency_table", "target",
             "predicted", "search")

    @property
    def data(self) -> str | None:
        """The data set the search ran on (search.data), if recorded."""
        return (self.search or {}).get("data") or None

    def layer(self, name: str) -> ArchLayer:
        return next(layer for layer in self.layers if layer.name == name)

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "arch") -> Arch:
        """The one check of an architecture, read or about to be written: schema, finite numbers, channel indices
        within their layer's counts, layers reading only layers before them, registered conv kinds, valid op specs.
        FgnasError naming `source` and the field otherwise."""
        _check_document(d, source)
        names = {"input"}
        layers = []
        for raw in d["layers"]:
            _check_layer(raw, names, source)
            try:
                layers.append(ArchLayer.from_dict(raw))
            except ValueError as exc:  # profiler.spec.ConvSpec's own rules
                raise FgnasError(f"{source}: layer {raw['name']} has an operation spec no conv can have ({exc})") \
                    from None
            names.add(raw["name"])
        head = d["head"]
        if head["input"] not in names:
            raise FgnasError(f"{source}: the head reads layer {head['input']!r}, which is not in layers")
        if _outside(head["active_in"], head["in_channels"]):
            raise FgnasError(f"{source}: the head has active channels outside 0..{head['in_channels'] - 1}")
        table = d.get("latency_table")
        return cls(d["schema_version"], Backbone(d["backbone"]["name"], _frozen(d["backbone"]["args"])),
                   InputShape(d["input"]["channels"], d["input"]["height"], d["input"]["width"]), tuple(layers),
                   ArchHead.from_dict(head), Predicted.from_dict(d["predicted"]),
                   TableRef.from_dict(table) if table is not None else None,
                   _frozen(d["target"]) if d.get("target") is not None else None,
                   _frozen(d["search"]) if "search" in d else None, d.get("created"), _extra(d, cls._KEYS))

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"schema_version": self.schema_version}
        if self.created is not None:
            d["created"] = self.created
        d.update({"backbone": self.backbone.to_dict(), "input": self.input.to_dict(),
                  "layers": [layer.to_dict() for layer in self.layers], "head": self.head.to_dict(),
                  "latency_table": self.latency_table.to_dict() if self.latency_table else None,
                  "target": _plain(self.target) if self.target is not None else None,
                  "predicted": self.predicted.to_dict()})
        if self.search is not None:
            d["search"] = _plain(self.search)
        return {**d, **_plain(self.extra)}


def as_arch(arch: Arch | Mapping, source: str = "arch") -> Arch:
    """The typed architecture of either form: callers on the search side hold the dict search.network.to_arch
    writes; it is parsed and validated here, once, on its way in."""
    return arch if isinstance(arch, Arch) else Arch.from_dict(arch, source)


# ---- validation ------------------------------------------------------------------------------------------------

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


def _check_document(arch: object, source: str) -> None:
    """Schema version, schema, finite numbers."""
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


def _check_layer(layer: dict, names: set[str], source: str) -> None:
    """A schema-valid layer against the layers before it (`names`) and its own channel counts."""
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
        if op["conv_type"] not in CONV_KINDS:
            raise FgnasError(f"{source}: layer {name} op {i} has conv type {op['conv_type']!r} (known: "
                             f"{', '.join(CONV_KINDS)})")


def validate_arch(arch: dict, source: str = "arch") -> None:
    """Arch.from_dict's check, for a caller that keeps the dict (the search writing it, read_arch)."""
    Arch.from_dict(arch, source)


# ---- files -----------------------------------------------------------------------------------------------------

def write_arch(path: str | Path, arch: dict) -> Path:
    """Validate, then write atomically (profiler.atomic)."""
    path = Path(path)
    validate_arch(arch, str(path))
    atomic_write_text(path, json.dumps(arch, indent=1) + "\n")
    return path


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FgnasError(f"no architecture file at {path}: pass the arch.json of a finished fgnas-search run") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FgnasError(f"{path} is not JSON ({exc}): pass the arch.json of a fgnas-search run") from None
    except RecursionError:  # json recurses once per nesting level: [[[[...]]]] is no architecture
        raise FgnasError(f"{path} is not an architecture file (nested too deeply)") from None
    except OSError as exc:  # a directory, or unreadable
        raise FgnasError(f"cannot read {path}: {exc.strerror}") from None


def read_arch(path: str | Path) -> dict:
    """arch.json as the validated dict (the search side and its tests); export reads `load_arch`."""
    path = Path(path)
    arch = _read_json(path)
    validate_arch(arch, str(path))
    return arch


def load_arch(path: str | Path) -> Arch:
    """arch.json as the typed, validated Arch."""
    path = Path(path)
    return Arch.from_dict(_read_json(path), str(path))
