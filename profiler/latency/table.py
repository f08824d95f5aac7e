"""LatencyTable: a device's fitted latency models (the paper's phi^latency), its file format, and predictions.

Absent conditions fall back, in this order, and the Prediction says which fallback it used:
1. activation: the fused clamps none / relu / relu6 cost the same inside the conv kernel, so each is priced from
   another one of the same condition;
2. resolution: the nearest input size (by pixel count, within RESOLUTION_FALLBACK_RATIO) of the same kernel, stride,
   conv type and activation, its a and b applied to this conv's own (tiled) FLOPs;
otherwise FgnasError saying what to profile. Never a silent zero. A table's `source.fallbacks` (a list) says which
it allows; imported phone tables (profiler/latency/importers) allow, instead of "resolution":
3. fully-connected: a 1x1 conv on a 1x1 map (a classifier or squeeze-excite written as a conv) is a matrix-vector
   product, priced by the table's FULLY_CONNECTED model on its multiply-accumulates;
4. resolution-model: a and b interpolated linearly in log(pixels) between the two nearest sizes of the same kernel,
   stride, conv type and (fused-clamp) activation, clamped to the nearest size outside the table's range (validated
   by holding out OFA Note10 resolutions: benchmarks/import_tables.py).
An imported table may also carry `source.in_network` (per feature-map size, what an op costs inside a whole network
relative to the isolated blocks the table was fitted to; see network_ms) and `source.op_provenance` (ops transferred
from another table rather than fitted; see provenance).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from profiler.atomic import atomic_write_text
from profiler.cost import round_up, straight_through, whole_model_ms
from profiler.errors import FgnasError
from profiler.latency.fit import (
    ConditionModel,
    LinearFit,
    NetworkModel,
    NetworkSample,
    OpModel,
    fit_conditions,
    fit_network,
    fit_op,
)
from profiler.model_ops import ConvOp, ModelOp, op_from_dict
from profiler.ops import INVOKE_PROBE, OpProbe, op_elements, op_units, unit_of
from profiler.spec import ConditionKey, ConvSpec

SCHEMA_VERSION = 4
# 1 lacks the small tiles (no ladder) and invoke_overhead_ms (none subtracted); 2 the weight knee (none); 3 the knee's
# step (0)
READABLE_SCHEMA_VERSIONS = (1, 2, 3, 4)
SCHEMA_PATH = Path(__file__).with_name("table_schema.json")
CLAMP_ACTIVATIONS = ("none", "relu", "relu6")
RESOLUTION_FALLBACK_RATIO = 4.0  # at most one stride-2 step (4x the pixels) away
FITS = ("selected", "affine")
# Coefficients every fit keeps at or above zero (profiler.latency.fit, profiler.latency.importers): a negative one gives
# negative or absurd predictions, so a table that has one was edited or made elsewhere and is refused on load.
NONNEGATIVE_CONDITION_FIELDS = ("a_ms_per_mflop", "b_ms", "misaligned_a_ms_per_mflop")
NONNEGATIVE_OP_FIELDS = ("a_ms_per_unit", "b_ms", "c_ms_per_element")


@dataclass(frozen=True)
class Prediction:
    """Predicted latency of one conv. `key` is the spec's condition; `used_key` the one whose fit priced it;
    `fallback` says why they differ (None when the table has the condition itself)."""

    ms: float
    key: ConditionKey
    fallback: str | None
    used_key: ConditionKey


@dataclass(frozen=True)
class ModelPrice:
    """A model's ops priced one by one, each as a one-op model (so each price contains one invoke's overhead): the
    priced ops with their price and fallback, the ops the table cannot price with the reason, and what the priced
    ops cost more inside one network (LatencyTable.network_ms)."""

    priced: tuple[tuple[ModelOp, float, str | None], ...]
    unpriced: tuple[tuple[ModelOp, FgnasError], ...]
    invoke_overhead_ms: float
    network_ms: float

    @property
    def ops_ms(self) -> float:
        """The priced ops run as one model: the invoke overhead paid once (profiler.cost.whole_model_ms)."""
        return whole_model_ms([ms for _, ms, _ in self.priced], self.invoke_overhead_ms)

    @property
    def total_ms(self) -> float:
        return self.ops_ms + self.network_ms


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_hash(doc: dict) -> str:
    """sha256 of the canonical JSON of everything except content_hash itself."""
    body = {k: v for k, v in doc.items() if k != "content_hash"}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def _non_finite(value, where: str = "top level") -> str | None:
    """Where in a parsed JSON value the first NaN or infinity is (json.loads accepts NaN and Infinity), or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{where}/{key}" if where != "top level" else str(key))
        if found:
            return found
    return None


def _negative_coefficient(doc: dict) -> str | None:
    """Where a table holds a negative coefficient or invoke overhead, or None."""
    if isinstance(doc.get("invoke_overhead_ms"), (int, float)) and doc["invoke_overhead_ms"] < 0:
        return "invoke_overhead_ms"
    for i, entry in enumerate(doc["conditions"]):
        for owner, where in ((entry, f"conditions/{i}"), (entry["affine"], f"conditions/{i}/affine")):
            for name in NONNEGATIVE_CONDITION_FIELDS:
                if isinstance(owner.get(name), (int, float)) and owner[name] < 0:
                    return f"{where}/{name}"
    for op, entry in doc["ops"].items():
        for name in NONNEGATIVE_OP_FIELDS:
            if isinstance(entry.get(name), (int, float)) and entry[name] < 0:
                return f"ops/{op}/{name}"
    return None


def lowest_medians(records: Iterable[dict], kind: str) -> dict[str, tuple[dict, float]]:
    """Per probe id of `kind`: (one of its records, the lowest median over its records, i.e. its passes).

    Interference only ever adds time, so of several medians of the same model taken a pass apart the lowest is the
    one least touched by it; the sweep measures every probe in `passes` separate passes for this
    (profiler.measure.sweep).
    """
    lowest: dict[str, tuple[dict, float]] = {}
    for record in records:
        if record.get("kind") != kind:
            continue
        ms = float(record["m"]["median_ms"])
        if record["id"] not in lowest or ms < lowest[record["id"]][1]:
            lowest[record["id"]] = (record, ms)
    return lowest


# Fewer distinct probes than this cannot fit a condition's line: a one-channel depthwise probe of a depthwise-only
# sweep condition reads as a normal conv (one channel, one group), and a line through that single point and the
# origin priced that normal condition at 60-380 ms for 1-4 ms convs. Such a condition is left to the table's fallbacks.
MIN_CONDITION_PROBES = 2


def _group_conv_records(records: Iterable[dict]) -> dict[ConditionKey, tuple[list[ConvSpec], list[float]]]:
    groups: dict[ConditionKey, tuple[list[ConvSpec], list[float]]] = defaultdict(lambda: ([], []))
    for record, median in lowest_medians(records, "conv").values():
        spec = ConvSpec.from_dict(record["spec"])
        specs, ms = groups[spec.condition]
        specs.append(spec)
        ms.append(median)
    return {key: group for key, group in groups.items() if len(group[0]) >= MIN_CONDITION_PROBES}


def _op_sizes(record: dict) -> tuple[str, str, int, int | None]:
    """The op probe's name, unit name, units and elements (profiler.ops decides what an op's units are, from the
    probe's shapes, so a raw log measured before a unit changed is re-fitted in the current unit)."""
    probe = OpProbe.from_dict(record["spec"])
    return probe.op, *probe.units, probe.elements


def _group_op_records(records: Iterable[dict]) -> dict[str, tuple[str, list[float], list[float], list[float]]]:
    """Per op: its unit, and per probe its units, lowest median and elements (profiler.ops.op_elements; copy ops)."""
    groups: dict[str, tuple[str, list[float], list[float], list[float]]] = {}
    for record, median in lowest_medians(records, "op").values():
        op, unit, count, moved = _op_sizes(record)
        _, units, ms, elements = groups.setdefault(op, (unit, [], [], []))
        units.append(float(count))
        ms.append(median)
        if moved is not None:
            elements.append(float(moved))
    return groups


def _network_samples(table: LatencyTable, records: Iterable[dict]) -> tuple[list[NetworkSample], int]:
    """The calibration networks of the raw log (kind "net", each with the ops read from its model), priced by
    `table`'s ops; and how many were left out because some op of theirs has no price."""
    samples, unpriced = [], 0
    for record, median in lowest_medians(records, "net").values():
        ops = [op_from_dict(d) for d in record["ops"]]
        price = table.price_model(ops)
        if price.unpriced:
            unpriced += 1
            continue
        samples.append(NetworkSample(median, price.ops_ms, sum(op.weights_mb for op in ops),
                                     tuple(op.activation_mb for op in ops)))
    return samples, unpriced


def reference_probe(records: Iterable[dict]) -> dict | None:
    """The sweep's reference conv (measured first and every few probes, profiler.measure.sweep): its id, spec, how
    often it was measured and its lowest median, the speed of the machine at its best during the sweep; None when the
    sweep measured none. profiler.latency.device_check times it again before a table prices anything for this
    machine."""
    records = [r for r in records if r.get("kind") == "reference"]
    if not records:
        return None
    record, ms = lowest_medians(records, "reference")[records[-1]["id"]]
    return {"id": record["id"], "spec": record["spec"], "n": sum(r["id"] == record["id"] for r in records),
            "lowest_median_ms": ms}


def _invoke_overhead_ms(records: Iterable[dict]) -> float | None:
    """The lowest median of the INVOKE_PROBE (profiler.ops), or None when the sweep did not measure it."""
    lowest = lowest_medians(records, "op").get(INVOKE_PROBE.config_hash())
    return None if lowest is None else lowest[1]


class LatencyTable:
    """One device's latency models. Build from raw-log records, save/load as JSON, predict conv and op latency."""

    def __init__(self, doc: dict, path: Path | None = None, raw_log_file: Path | None = None):
        self._doc = doc
        self.path = path
        self._raw_log_file = raw_log_file
        self.conditions: dict[ConditionKey, ConditionModel] = {}
        for entry in doc["conditions"]:
            model = ConditionModel.from_dict(entry)
            self.conditions[model.key] = model
        self.ops: dict[str, OpModel] = {op: OpModel.from_dict(op, d) for op, d in doc["ops"].items()}
        network = doc.get("network")
        self.network: NetworkModel | None = (
            NetworkModel.from_dict({k: v for k, v in network.items() if k != "unpriced_networks"}) if network else None)

    # ---- building, saving, loading -------------------------------------------------------------------------------

    @classmethod
    def build(cls, records: list[dict], device_info: dict, settings: dict, raw_log_path: Path,
              source: dict | None = None, drift: dict | None = None) -> LatencyTable:
        """Fit every condition and op in `records` (raw-log dicts, see profiler.measure.rawlog)."""
        raw_log_path = Path(raw_log_path)
        if not raw_log_path.is_file():
            raise FgnasError(f"raw log {raw_log_path} not found: the table must point at the measurements it came from")
        try:
            conditions = [model.to_dict() for model in fit_conditions(_group_conv_records(records))]
            ops = {op: fit_op(op, unit, units, ms, elements or None).to_dict()
                   for op, (unit, units, ms, elements) in sorted(_group_op_records(records).items())}
        except ValueError as exc:  # e.g. a zero latency: a timer too coarse for the op; the raw log is kept as is
            raise FgnasError(f"cannot fit {raw_log_path}: {exc}; re-measure those probes with more --runs") from exc
        if not conditions and not ops:
            raise FgnasError(f"no conv or op measurements in {raw_log_path}: run the sweep first")
        doc = {
            "schema_version": SCHEMA_VERSION,
            "table_version": 1,
            "content_hash": "",
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "device": dict(device_info),
            "settings": dict(settings),
            "source": dict(source) if source else {"kind": "measured"},
            "raw_log": {"path": raw_log_path.name, "sha256": sha256_file(raw_log_path), "records": len(records)},
            "drift": drift,
            "reference_probe": reference_probe(records),
            "invoke_overhead_ms": _invoke_overhead_ms(records),
            "conditions": conditions,
            "ops": ops,
        }
        samples, unpriced = _network_samples(cls({**doc, "network": None}), records)
        network = fit_network(samples)
        doc["network"] = None if network is None else {**network.to_dict(), "unpriced_networks": unpriced}
        doc["content_hash"] = content_hash(doc)
        return cls(doc, None, raw_log_path.resolve())

    def save(self, path: Path) -> Path:
        """Write atomically; `table_version` becomes the previous one + 1 when `path` holds a table of the same
        device. The raw log's path is stored relative to the table's directory."""
        path = Path(path)
        doc = dict(self._doc)
        doc["table_version"] = self._previous_version(path, doc["device"].get("name")) + 1
        if self._raw_log_file is not None:
            raw = dict(doc["raw_log"])
            raw["path"] = os.path.relpath(self._raw_log_file, path.parent.resolve())
            doc["raw_log"] = raw
        doc["content_hash"] = content_hash(doc)
        atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n", "choose a writable --out")
        self._doc = doc
        self.path = path
        return path

    @staticmethod
    def _previous_version(path: Path, device_name: str | None) -> int:
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return 0
        if isinstance(previous, dict) and previous.get("device", {}).get("name") == device_name:
            version = previous.get("table_version")
            return version if isinstance(version, int) else 0
        return 0

    @classmethod
    def load(cls, path: Path) -> LatencyTable:
        """Read and validate a table; FgnasError (one line, what to do) for anything the search cannot trust."""
        import jsonschema

        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FgnasError(f"no latency table at {path}: create it with `fgnas-profile --device NAME --out {path}`") \
                from None
        except OSError as exc:
            raise FgnasError(f"cannot read latency table {path}: {exc.strerror}") from exc
        except UnicodeDecodeError:
            raise FgnasError(f"{path} is not a latency table (not UTF-8 text): pass a device_tables/*.json file") \
                from None
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise FgnasError(f"{path} is not valid JSON ({exc}): restore it from git or re-profile the device") from exc
        if not isinstance(doc, dict) or "schema_version" not in doc:
            raise FgnasError(f"{path} is not a latency table (no schema_version): pass a device_tables/*.json file")
        where = _non_finite(doc)
        if where is not None:
            raise FgnasError(f"{path} holds a non-finite number at {where} (NaN or infinity): restore it from git or "
                             f"re-profile the device")
        version = doc["schema_version"]
        if version not in READABLE_SCHEMA_VERSIONS:
            if isinstance(version, int) and version > SCHEMA_VERSION:
                raise FgnasError(f"{path} has schema_version {version}, newer than this fgnas reads "
                                 f"({SCHEMA_VERSION}): upgrade fgnas")
            raise FgnasError(f"{path} has unknown schema_version {version!r} (this fgnas reads "
                             f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}): "
                             f"re-profile the device or re-import the table")
        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(doc))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "top level"
            raise FgnasError(f"{path} is not a valid latency table ({where}: {error.message}): restore it from git "
                             f"or re-profile the device")
        where = _negative_coefficient(doc)
        if where is not None:
            raise FgnasError(f"{path} holds a negative coefficient at {where} (no fit makes one; it would give "
                             f"negative latencies): restore it from git or re-profile the device")
        if doc["content_hash"] != content_hash(doc):
            raise FgnasError(f"{path} was changed after it was written (content_hash mismatch): restore it from git "
                             f"or rebuild it from its raw log")
        raw_file = (path.parent / doc["raw_log"]["path"]).resolve()
        return cls(doc, path, raw_file)

    # ---- metadata --------------------------------------------------------------------------------------------------

    @property
    def doc(self) -> dict:
        """The table's JSON document (a copy)."""
        return json.loads(json.dumps(self._doc))

    @property
    def device(self) -> dict:
        return dict(self._doc["device"])

    @property
    def source(self) -> dict:
        return dict(self._doc["source"])

    @property
    def table_version(self) -> int:
        return self._doc["table_version"]

    @property
    def content_hash(self) -> str:
        return self._doc["content_hash"]

    @property
    def invoke_overhead_ms(self) -> float:
        """The runtime's cost of one invoke, contained once in every op's prediction (0 when not measured)."""
        return self._doc.get("invoke_overhead_ms") or 0.0

    @property
    def raw_log_file(self) -> Path | None:
        """The raw log on disk (absolute), or None when unknown."""
        return self._raw_log_file

    # ---- predictions -----------------------------------------------------------------------------------------------

    def condition(self, key: ConditionKey) -> ConditionModel:
        """The fitted model of exactly this condition (no fallback)."""
        try:
            return self.conditions[key]
        except KeyError:
            raise FgnasError(self._missing_message(key)) from None

    def _missing_message(self, key: ConditionKey) -> str:
        return (f"latency table for {self._doc['device'].get('name')!r} has no condition {key} and no fallback for it: "
                f"profile it (fgnas-profile with kernel {key.kernel}, stride {key.stride}, {key.conv_type} convs, "
                f"activation {key.activation} at {key.h}x{key.w})")

    def _fallback(self, key: ConditionKey) -> tuple[ConditionModel, str | None] | None:
        if key in self.conditions:
            return self.conditions[key], None
        allowed = self._doc["source"].get("fallbacks", ("activation", "resolution"))
        if key.activation in CLAMP_ACTIVATIONS and "activation" in allowed:
            for act in CLAMP_ACTIVATIONS:
                other = replace(key, activation=act)
                if other in self.conditions:
                    return self.conditions[other], (f"activation {key.activation} priced from {act} "
                                                    f"(fused clamps cost the same)")
        if "fully-connected" in allowed and (key.h, key.w, key.kernel, key.conv_type) == (1, 1, 1, "normal"):
            found = self._as_fully_connected(key)
            if found is not None:
                return found
        if "resolution-model" in allowed:
            return self._interpolated(key)
        if "resolution" not in allowed:
            return None
        acts = CLAMP_ACTIVATIONS if key.activation in CLAMP_ACTIVATIONS else (key.activation,)
        pixels = key.h * key.w
        best: tuple[float, str, ConditionModel] | None = None
        for candidate, model in self.conditions.items():
            if (candidate.kernel, candidate.stride, candidate.conv_type, candidate.groups) != \
                    (key.kernel, key.stride, key.conv_type, key.groups) or candidate.activation not in acts:
                continue
            distance = abs(math.log(candidate.h * candidate.w / pixels))
            rank = (distance, str(candidate))
            if distance <= math.log(RESOLUTION_FALLBACK_RATIO) and (best is None or rank < best[:2]):
                best = (*rank, model)
        if best is None:
            return None
        model = best[2]
        return model, (f"no {key.h}x{key.w} condition: used the fit of {model.key} on this conv's own FLOPs")

    def _as_fully_connected(self, key: ConditionKey) -> tuple[ConditionModel, str] | None:
        """A 1x1 conv on a 1x1 map priced by the FULLY_CONNECTED model: a ms per MAC is a * 1e6 / 2 ms per MFLOP."""
        fc = self.ops.get("FULLY_CONNECTED")
        if fc is None or fc.unit != "macs":
            return None
        a = fc.a_ms_per_unit * 1e6 / 2
        fit = LinearFit(a, fc.b_ms, fc.n, None, fc.mape, fc.cv_mape)
        model = ConditionModel(key, "affine", a, fc.b_ms, 1, 1, fc.n, None, fc.mape, fc.cv_mape, fit)
        return model, "fully-connected: a 1x1 conv on a 1x1 map priced by the FULLY_CONNECTED model on its MACs"

    def _interpolated(self, key: ConditionKey) -> tuple[ConditionModel, str] | None:
        """The resolution model: a and b interpolated in log(pixels) between the nearest sizes of this kernel, stride,
        conv type and activation (any fused clamp when this one has none), clamped outside the sizes the table has."""
        same = [(c, m) for c, m in self.conditions.items()
                if (c.kernel, c.stride, c.conv_type, c.groups) == (key.kernel, key.stride, key.conv_type, key.groups)
                and c.h * c.w > 1]
        acts = [key.activation] if any(c.activation == key.activation for c, _ in same) else (
            list(CLAMP_ACTIVATIONS) if key.activation in CLAMP_ACTIVATIONS else [])
        by_size: dict[tuple[int, int], ConditionModel] = {}
        for c, m in sorted(same, key=lambda cm: (acts.index(cm[0].activation) if cm[0].activation in acts else 9,
                                                 str(cm[0]))):
            if c.activation in acts:
                by_size.setdefault((c.h, c.w), m)
        if not by_size or key.h * key.w <= 1:
            return None
        points = sorted((math.log(h * w), m) for (h, w), m in by_size.items())
        a, b, lo, hi = interpolate_log_size([(x, m.a_ms_per_mflop, m.b_ms) for x, m in points],
                                            math.log(key.h * key.w))
        aa, ab, _, _ = interpolate_log_size([(x, m.affine.a, m.affine.b) for x, m in points], math.log(key.h * key.w))
        base = points[lo][1]
        model = replace(base, key=key, a_ms_per_mflop=a, b_ms=b, misaligned_a_ms_per_mflop=None, align=1,
                        affine=replace(base.affine, a=aa, b=ab))
        if lo == hi:
            note = (f"resolution model: no {key.h}x{key.w} condition, clamped to {base.key.h}x{base.key.w} "
                    f"(nearest size)")
        else:
            other = points[hi][1].key
            note = (f"resolution model: a, b interpolated in log pixels between {base.key.h}x{base.key.w} and "
                    f"{other.h}x{other.w}")
        return model, note

    def resolve(self, key: ConditionKey) -> tuple[ConditionModel, str | None]:
        """The condition model that prices `key`, and the fallback used (None for an exact match)."""
        found = self._fallback(key)
        if found is None:
            raise FgnasError(self._missing_message(key))
        return found

    def predict(self, spec: ConvSpec, fit: str = "selected") -> Prediction:
        """Latency of one conv. `fit="affine"` uses the paper's plain fit instead of the selected (tile-aware) one."""
        if fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
        model, fallback = self.resolve(spec.condition)
        ms = model.predict_ms(spec) if fit == "selected" else model.predict_affine_ms(spec)
        return Prediction(ms, spec.condition, fallback, model.key)

    def predict_ms(self, spec: ConvSpec, fit: str = "selected") -> float:
        return self.predict(spec, fit).ms

    def predict_op_ms(self, op_name: str, units: float, elements: float = 0.0) -> float:
        """Latency of one non-conv op from its per-op model (units as profiler.ops.op_units counts them; elements as
        profiler.ops.op_elements does, for copy ops)."""
        try:
            model = self.ops[op_name]
        except KeyError:
            raise FgnasError(f"latency table for {self._doc['device'].get('name')!r} has no model for op {op_name}: "
                             f"add {op_name} probes to the sweep's op list (profiler/ops.py) and re-profile") from None
        if unit_of(op_name) not in (None, model.unit):
            raise FgnasError(f"latency table for {self._doc['device'].get('name')!r} prices {op_name} per "
                             f"{model.unit}, this fgnas counts {unit_of(op_name)}: re-run the fgnas-profile command "
                             f"that made the table (it re-fits from its raw log)")
        return model.predict_ms(units, elements)

    def price_op(self, op: ModelOp, fit: str = "selected") -> tuple[float, str | None]:
        """One op read from a model (profiler.model_ops), priced as a one-op model: (ms, the fallback used or None);
        FgnasError when the table cannot price it."""
        if isinstance(op, ConvOp):
            p = self.predict(op.spec, fit)
            return p.ms, p.fallback
        shapes = list(op.input_shapes), list(op.output_shapes)
        return self.predict_op_ms(op.op, op_units(op.op, *shapes)[1], op_elements(op.op, *shapes) or 0), None

    def price_model(self, ops: Iterable[ModelOp], fit: str = "selected") -> ModelPrice:
        """Every op of a model priced as a one-op model (price_op), the ops it cannot price kept with the reason,
        and the in-network cost of the priced ones (network_ms): the one loop that prices a whole model."""
        priced, unpriced = [], []
        for op in ops:
            try:
                priced.append((op, *self.price_op(op, fit)))
            except FgnasError as exc:
                unpriced.append((op, exc))
        return ModelPrice(tuple(priced), tuple(unpriced), self.invoke_overhead_ms,
                          self.network_ms(op for op, _, _ in priced))

    def network_ms(self, ops: Iterable[ModelOp]) -> float:
        """What `ops` cost together inside one network beyond their single-op prices and whole_model_ms
        (profiler.latency.fit.NetworkModel; 0 for a table without calibration networks)."""
        ops = list(ops)
        extra = self._in_network_ms(ops)
        if self.network is None:
            return extra
        return extra + sum(self.network.extra_ms(op.weights, op.activations) for op in ops)

    def in_network_factor(self, op: ModelOp) -> float:
        """What `op` costs inside a whole network relative to its price (source.in_network of an imported table:
        a factor per working set, the op's weights + activations in MB, interpolated in log size and clamped at the
        ends); 1 for an op on a vector or a 1x1 map (no in-network data) and for a table without it."""
        model = self._doc.get("source", {}).get("in_network")
        size = op.spec.h if isinstance(op, ConvOp) else (
            op.input_shapes[0][1] if op.input_shapes and len(op.input_shapes[0]) == 4 else 1)
        if not model or size <= 1:
            return 1.0
        points = sorted((math.log(p["working_set_mb"]), p["factor"], 0.0) for p in model["factors"])
        return interpolate_log_size(points, math.log(max(op.weights_mb + op.activation_mb, 1e-9)))[0]

    def _in_network_ms(self, ops: list[ModelOp]) -> float:
        if not self._doc.get("source", {}).get("in_network"):
            return 0.0
        total = 0.0
        for op in ops:
            factor = self.in_network_factor(op)
            if factor != 1.0:
                total += (factor - 1.0) * self.price_op(op)[0]
        return total

    def provenance(self, op: ModelOp) -> str:
        """Where an op's price comes from: "measured" (a measured table), "fitted" (an imported table's joint fit,
        with the fallback that priced it, if any) or "transferred from ..." (source.op_provenance)."""
        if self._doc["source"].get("kind") != "imported":
            base = "measured"
        elif isinstance(op, ConvOp):
            base = "fitted"
        else:
            entry = self._doc["source"].get("op_provenance", {}).get(op.op)
            base = entry["text"] if entry else "fitted"
        return base

    def missing_conditions(self, specs: Iterable[ConvSpec], allow_fallback: bool = False) -> list[ConditionKey]:
        """Conditions of `specs` the table lacks (in first-seen order). With allow_fallback, only those that cannot
        be priced at all."""
        missing: dict[ConditionKey, None] = {}
        for spec in specs:
            key = spec.condition
            absent = self._fallback(key) is None if allow_fallback else key not in self.conditions
            if absent:
                missing[key] = None
        return list(missing)

    def latency_torch(self, spec: ConvSpec, cin, cout):
        """Differentiable latency (ms, a torch scalar tensor) of `spec` with soft channel counts `cin`, `cout`.

        Channels are rounded up to the condition's tiles (and small tiles, profiler.cost.effective_channels) in the
        forward pass with a straight-through (identity) gradient, so d(ms)/d(cout) = a * d(FLOPs)/d(cout) on the
        tiled counts; a is the slope of the current (rounded) count, misaligned or not (ConditionModel.slope). For a
        depthwise conv the channel count is `cout` (cin is ignored: it equals cout). Absent conditions use the same
        fallbacks as `predict`.
        """
        import torch

        model, _ = self.resolve(spec.condition)
        cin = torch.as_tensor(cin, dtype=torch.float32)
        cout = torch.as_tensor(cout, dtype=torch.float32)
        return model.latency_ms(spec, cin, cout, straight_through(round_up))


def interpolate_log_size(points: list[tuple[float, float, float]], x: float) -> tuple[float, float, int, int]:
    """(a, b) at x, linear between the two sorted `points` (x_i, a_i, b_i) around it, the nearest point's values
    outside them; and the indices of the two points used (equal when clamped or exact)."""
    if x <= points[0][0]:
        return points[0][1], points[0][2], 0, 0
    if x >= points[-1][0]:
        return points[-1][1], points[-1][2], len(points) - 1, len(points) - 1
    for i in range(len(points) - 1):
        (x0, a0, b0), (x1, a1, b1) = points[i], points[i + 1]
        if x0 <= x <= x1:
            if x == x0:
                return a0, b0, i, i
            if x == x1:
                return a1, b1, i + 1, i + 1
            t = (x - x0) / (x1 - x0)
            return a0 + t * (a1 - a0), b0 + t * (b1 - b0), i, i + 1
    raise AssertionError("unreachable: points are sorted")

