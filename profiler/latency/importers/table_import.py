"""Build a LatencyTable from a published per-block phone latency lookup table.

`import_table("proxylessnas", path, "pixel1")` reads the entries (one registered reader per format), decomposes
them into convs and ops (blocks.py), fits every condition's `a * MFLOPs + b` jointly over all entries
(joint_fit.py), validates the fit on held-out entries, and returns a LatencyTable whose `source` records where the
numbers came from (files, sha256, license, citation), what was fitted and how it was validated.
"""
from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from profiler.errors import FgnasError
from profiler.latency.importers import ofa, proxylessnas
from profiler.latency.importers.blocks import LutEntry
from profiler.latency.importers.joint_fit import SHARINGS, JointFit, Sharing, fit, held_out_predictions
from profiler.latency.table import SCHEMA_VERSION, LatencyTable, content_hash, sha256_file
from profiler.spec import ConditionKey

FIT_METHOD = ("one joint scipy.optimize.lsq_linear (bvls) fit over all entries, every parameter >= 0, rows weighted "
              "by 1/published latency (relative error); an entry's latency = sum of its ops' a * MFLOPs + b "
              "(convs, FLOPs = 2 x MACs) and a * units + b (other ops)")


@dataclass(frozen=True)
class ImportFormat:
    """A published lookup-table format: how to read it, what it is, and how its fit is shared and validated."""

    name: str
    read: Callable[[Path], tuple[list[LutEntry], list[Path]]]
    license: str
    citation: str
    device: dict
    ties: Mapping[str, str]
    sharing: Sharing
    validation: str  # the held-out unit: "block" (leave one block out) or "resolution" (leave one resolution out)
    # default measured table to transfer missing ops from (profiler.latency.importers.transfer)
    transfer_from: Path | None = None
    # default in-network file name, beside the lookup table (profiler.latency.importers.in_network)
    in_network: str | None = None


REPOSITORY = Path(__file__).resolve().parents[3]

FORMATS: dict[str, ImportFormat] = {
    fmt.name: fmt
    for fmt in (
        ImportFormat("proxylessnas", proxylessnas.read_entries, proxylessnas.LICENSE, proxylessnas.CITATION,
                     proxylessnas.DEVICE, proxylessnas.OP_TIES, SHARINGS["dw-per-stride"], "block",
                     REPOSITORY / "device_tables" / "host-amd-f26m2s1.json",
                     "singlepath_nas_pixel1_runtime_model.json"),
        ImportFormat("ofa", ofa.read_entries, ofa.LICENSE, ofa.CITATION, ofa.DEVICE, ofa.OP_TIES,
                     SHARINGS["dw-per-stride"], "resolution"),
    )
}

RESOLUTION_MODEL = ("a conv size the table lacks takes a and b interpolated linearly in log(pixels) between the two "
                    "nearest sizes of its kernel, stride, conv type and activation, clamped to the nearest size "
                    "outside them (profiler.latency.table); validated by fitting OFA Note10 at 224 px only and "
                    "predicting its 16 other resolutions, and by leaving each interior level out of ProxylessNAS "
                    "(benchmarks/import_tables.py)")

_GROUPS: dict[str, Callable[[LutEntry], object]] = {"block": lambda e: e.key, "resolution": lambda e: e.resolution}


def get_format(name: str) -> ImportFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise FgnasError(f"unknown import format {name!r}: choose one of {', '.join(sorted(FORMATS))}") from None


def _sig(x: float | None) -> float | None:
    """Seven significant digits: far below the data's noise, and keeps the committed tables small and diffable."""
    return None if x is None else float(f"{x:.7g}")


def _rel(p: float, y: float) -> float:
    return abs(p - y) / y


def _summary(errors: Sequence[float]) -> dict:
    """Median, 90th percentile (linear interpolation) and max of relative errors."""
    if not errors:
        return {"n": 0, "median": None, "p90": None, "max": None}
    values = np.asarray(errors, dtype=float)
    return {"n": len(values), "median": round(float(np.median(values)), 5),
            "p90": round(float(np.percentile(values, 90)), 5), "max": round(float(values.max()), 5)}


def validation_report(fmt: ImportFormat, entries: Sequence[LutEntry], fitted: JointFit,
                      held_out: Sequence[float | None]) -> dict:
    """In-sample and held-out relative errors of the MBConv blocks (the entries the fit must decompose)."""
    blocks = [(e, h) for e, h in zip(entries, held_out) if e.role == "block"]
    report = {
        "metric": "|predicted - published| / published latency of each MBConv block",
        "in_sample": _summary([_rel(fitted.predict(e), e.mean_ms) for e, _ in blocks]),
    }
    if fmt.validation == "block":
        report["kind"] = "leave-one-block-out: refit without the block, predict it"
        report["held_out"] = _summary([_rel(h, e.mean_ms) for e, h in blocks if h is not None])
        report["per_block"] = {e.key: None if h is None else round(_rel(h, e.mean_ms), 5) for e, h in blocks}
    else:
        report["kind"] = "leave-one-resolution-out: refit on the other resolutions, predict every block of this one"
        resolutions = sorted({e.resolution for e, _ in blocks})
        report["held_out"] = _summary([_rel(h, e.mean_ms) for e, h in blocks if h is not None])
        report["per_resolution"] = {
            str(r): _summary([_rel(h, e.mean_ms) for e, h in blocks if h is not None and e.resolution == r])
            for r in resolutions}
    return report


def _condition_entries(fitted: JointFit, entries: Sequence[LutEntry], held_out: Sequence[float | None]) -> list[dict]:
    models: dict[ConditionKey, tuple[float, float]] = {}
    users: dict[ConditionKey, list[int]] = {}
    for i, entry in enumerate(entries):
        for spec in entry.convs:
            model = fitted.conv_model(spec, entry.resolution)
            key = spec.condition
            if models.setdefault(key, model) != model:
                raise FgnasError(f"condition {key} gets two different fits (from resolutions that place it at "
                                 "different pyramid levels); import those resolutions separately")
            users.setdefault(key, []).append(i)
    conditions = []
    for key in sorted(models, key=str):
        a, b = models[key]
        in_sample = statistics.fmean(_rel(fitted.predict(entries[i]), entries[i].mean_ms) for i in users[key])
        held = [_rel(held_out[i], entries[i].mean_ms) for i in users[key] if held_out[i] is not None]
        cv = statistics.fmean(held) if held else None
        a, b = _sig(a), _sig(b)
        stats = {"r2": None, "mape": _sig(in_sample), "cv_mape": _sig(cv)}
        conditions.append({"key": str(key), "h": key.h, "w": key.w, "kernel": key.kernel, "stride": key.stride,
                           "conv_type": key.conv_type, "activation": key.activation, "groups": key.groups,
                           "model": "affine", "a_ms_per_mflop": a, "b_ms": b, "cout_tile": 1, "cin_tile": 1,
                           "n": len(users[key]), **stats, "affine": {"a_ms_per_mflop": a, "b_ms": b, **stats}})
    return conditions


def _op_entries(fitted: JointFit, entries: Sequence[LutEntry], held_out: Sequence[float | None]) -> dict:
    ops: dict[str, dict] = {}
    users: dict[str, list[int]] = {}
    for i, entry in enumerate(entries):
        for use in entry.ops:
            ops.setdefault(use.op, {"unit": use.unit})
            users.setdefault(use.op, []).append(i)
    for op, d in ops.items():
        a, b = fitted.op_model(op)
        idx = sorted(set(users[op]))
        held = [_rel(held_out[i], entries[i].mean_ms) for i in idx if held_out[i] is not None]
        d.update({"a_ms_per_unit": _sig(a), "b_ms": _sig(b), "n": len(idx),
                  "mape": _sig(statistics.fmean(_rel(fitted.predict(entries[i]), entries[i].mean_ms) for i in idx)),
                  "cv_mape": _sig(statistics.fmean(held)) if held else None})
    return dict(sorted(ops.items()))


def _files_digest(files: Sequence[Path]) -> tuple[list[dict], str]:
    listed = [{"name": f.name, "sha256": sha256_file(f), "bytes": f.stat().st_size} for f in files]
    if len(listed) == 1:
        return listed, listed[0]["sha256"]
    combined = hashlib.sha256("".join(f"{d['sha256']}  {d['name']}\n" for d in listed).encode()).hexdigest()
    return listed, combined


def _companions(fmt: ImportFormat, path: Path, transfer_from: Path | None,
                in_network: Path | None) -> tuple[Path | None, Path | None]:
    """The files the import uses besides the published table: those given, else the format's defaults where they
    exist (the in-network file beside the lookup table, the measured table in the repository's device_tables/), so
    that a plain `fgnas-table import` reproduces the committed table."""
    if transfer_from is None and fmt.transfer_from is not None and fmt.transfer_from.is_file():
        transfer_from = fmt.transfer_from
    if in_network is None and fmt.in_network is not None:
        beside = (path if path.is_dir() else path.parent) / fmt.in_network
        in_network = beside if beside.is_file() else None
    return transfer_from, in_network


def import_table(format_name: str, path: Path, device: str, transfer_from: Path | None = None,
                 in_network: Path | None = None) -> LatencyTable:
    """Read a published lookup table (a file, or for OFA a directory of per-resolution files), fit and validate it,
    and return the LatencyTable (not yet saved: call `.save(out)`).

    `transfer_from`: a measured table whose ops the published one lacks are transferred
    (profiler.latency.importers.transfer); `in_network`: Single-Path NAS's Pixel 1 runtime model, from which the
    in-network factor is derived (profiler.latency.importers.in_network; ProxylessNAS only, whose blocks it matches)."""
    fmt = get_format(format_name)
    path = Path(path)
    if not path.exists():
        raise FgnasError(f"no lookup table at {path}: pass the published file (or, for --format ofa, its directory)")
    entries, files = fmt.read(path)
    transfer_from, in_network = _companions(fmt, path, transfer_from, in_network)
    fitted = fit(entries, fmt.sharing, fmt.ties)
    held_out = held_out_predictions(entries, fmt.sharing, _GROUPS[fmt.validation], fmt.ties)
    listed, digest = _files_digest(files)
    roles = sorted({e.role for e in entries})
    source = {
        "kind": "imported",
        "format": fmt.name,
        "files": listed,
        "sha256": digest,
        "license": fmt.license,
        "citation": fmt.citation,
        "published_device": fmt.device,
        "entries": {role: sum(e.role == role for e in entries) for role in roles},
        "resolutions": sorted({e.resolution for e in entries}),
        "fitted": {
            "method": FIT_METHOD,
            "sharing": fmt.sharing.name,
            "sharing_description": fmt.sharing.description,
            "op_slope_ties": dict(fmt.ties),
            "op_intercepts": sorted(fitted.op_intercepts),
            "parameters": {name: round(value, 6) for name, value in sorted(fitted.params.items())},
        },
        "validation": validation_report(fmt, entries, fitted, held_out),
        # profiler/latency/table.py: fused clamps cost the same; a 1x1 conv on a 1x1 map is a FULLY_CONNECTED; other
        # sizes by the resolution model (interpolated in log pixels, clamped at the ends)
        "fallbacks": ["activation", "fully-connected", "resolution-model"],
        "resolution_model": RESOLUTION_MODEL,
    }
    ops = _op_entries(fitted, entries, held_out)
    provenance = {op: {"kind": "fitted", "text": f"fitted (slope tied to {to})"} for op, to in fmt.ties.items()}
    if transfer_from is not None:
        from profiler.latency.importers.transfer import transfer_ops

        ops, transferred, source["op_transfer"] = transfer_ops(ops, Path(transfer_from))
        provenance.update(transferred)
    source["op_provenance"] = dict(sorted(provenance.items()))
    if in_network is not None:
        from profiler.latency.importers.in_network import in_network_model

        source["in_network"] = in_network_model(Path(in_network), entries)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "table_version": 1,
        "content_hash": "",
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": {"name": device},
        "settings": {"runtime": fmt.device["runtime"], "batch": fmt.device["batch"], "threads": fmt.device["threads"],
                     "statistic": "published mean"},
        "source": source,
        "raw_log": {"path": str(path), "sha256": digest, "records": len(entries)},
        "drift": None,
        "conditions": _condition_entries(fitted, entries, held_out),
        "ops": ops,
    }
    doc["content_hash"] = content_hash(doc)
    return LatencyTable(doc, None, path.resolve())
