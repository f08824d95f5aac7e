"""Reading the published lookup-table YAML files and their keys (shared by the ProxylessNAS and OFA formats).

A key is `NAME-field:value-field:value...`, e.g.
`expanded_conv-input:56x56x24-output:28x28x40-expand:3-kernel:3-stride:2-idskip:0`; shapes are `HxWxC` (or a bare
channel count for Logits). Each value is `{count, mean, var}` (ProxylessNAS) or `{count, mean, std}` (OFA), in ms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from profiler.errors import FgnasError


@dataclass(frozen=True)
class LutRecord:
    key: str
    name: str
    fields: dict[str, str]
    mean_ms: float
    std_ms: float
    count: int

    def shape(self, field: str) -> tuple[int, ...]:
        return tuple(int(v) for v in self.fields[field].split("x"))

    def int_field(self, field: str) -> int:
        return int(self.fields[field])


def parse_key(key: str) -> tuple[str, dict[str, str]]:
    name, *parts = key.split("-")
    fields: dict[str, str] = {}
    for part in parts:
        field, sep, value = part.partition(":")
        if not sep:
            raise ValueError(f"lookup-table key {key!r}: part {part!r} is not field:value")
        fields[field] = value
    return name, fields


def _check_numbers(record: LutRecord) -> None:
    """ValueError unless the entry's figures can be a latency: a positive finite mean (the fit weights rows by
    1/mean), a finite non-negative spread, at least one run. YAML reads `.nan` and `.inf` as floats."""
    if not (math.isfinite(record.mean_ms) and record.mean_ms > 0):
        raise ValueError(f"mean {record.mean_ms} is not a positive finite latency")
    if not (math.isfinite(record.std_ms) and record.std_ms >= 0):
        raise ValueError(f"var/std {record.std_ms} is not a finite non-negative spread")
    if record.count < 1:
        raise ValueError(f"count {record.count} is below 1")


def read_lut(path: Path) -> list[LutRecord]:
    """All records of one lookup-table YAML file, in file order."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FgnasError(f"cannot read lookup table {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise FgnasError(f"{path} is not a lookup table (not UTF-8 text); pass a published lookup-table file") \
            from None
    except yaml.YAMLError as exc:
        raise FgnasError(f"{path} is not valid YAML ({exc.__class__.__name__}); pass a published lookup-table "
                         f"file") from exc
    if not isinstance(data, dict) or not data:
        raise FgnasError(f"{path} holds no lookup-table entries (expected `key: {{count, mean, var|std}}` lines)")
    records = []
    for key, value in data.items():
        try:
            name, fields = parse_key(str(key))
            std = math.sqrt(float(value["var"])) if "var" in value else float(value["std"])
            record = LutRecord(str(key), name, fields, float(value["mean"]), std, int(value["count"]))
            _check_numbers(record)
            records.append(record)
        except (ValueError, KeyError, TypeError) as exc:
            raise FgnasError(f"{path}: entry {key!r} is not a lookup-table entry ({exc}); "
                             "expected `NAME-input:HxWxC-output:...: {count, mean, var|std}`") from exc
    return records
