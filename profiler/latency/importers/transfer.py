"""Ops a published lookup table never contains (SOFTMAX, MUL, HARD_SWISH, LOGISTIC, RESHAPE, AVERAGE_POOL_2D, ...),
transferred from a measured table of another device.

Model: an op's per-unit cost on the phone = its measured cost on the other device x the phone/other ratio of the
per-unit slope of an op both tables price (ADD: the elementwise op the phone table fits from its skip blocks; every
transferred op streams its tensors through memory once, as ADD does). Intercepts are scaled the same way after
removing the other device's invoke overhead (each of its single-op measurements contains one; inside a model it is
paid once). The table records, per op, where it came from and the scale (source.op_provenance).
"""
from __future__ import annotations

from pathlib import Path

from profiler.errors import FgnasError
from profiler.latency.table import LatencyTable

REFERENCE_OP = "ADD"


def transfer_ops(ops: dict[str, dict], other_path: Path) -> tuple[dict[str, dict], dict[str, dict], dict]:
    """(ops with the transferred ones added, source.op_provenance, a summary of the transfer) for the fitted `ops`
    of an imported table (profiler.latency.importers.table_import) and a measured table at `other_path`."""
    other = LatencyTable.load(other_path)
    if other.source.get("kind") != "measured":
        raise FgnasError(f"{other_path} is not a measured table: transfer ops from a table profiled on a device")
    if REFERENCE_OP not in ops or REFERENCE_OP not in other.ops:
        raise FgnasError(f"cannot scale ops from {other_path}: both tables need {REFERENCE_OP}")
    here, there = ops[REFERENCE_OP]["a_ms_per_unit"], other.ops[REFERENCE_OP].a_ms_per_unit
    if not here or not there:
        raise FgnasError(f"cannot scale ops from {other_path}: {REFERENCE_OP}'s per-unit slope is 0 in one table")
    scale = here / there
    overhead = other.invoke_overhead_ms
    name = f"{other.device.get('name')} ({Path(other_path).name}, {other.content_hash[:19]})"
    merged = dict(ops)
    provenance = {}
    for op, model in sorted(other.ops.items()):
        if op in ops:
            continue
        merged[op] = {"unit": model.unit, "a_ms_per_unit": float(f"{model.a_ms_per_unit * scale:.7g}"),
                      "b_ms": float(f"{max(model.b_ms - overhead, 0.0) * scale:.7g}"), "n": model.n,
                      "mape": model.mape, "cv_mape": model.cv_mape}
        if model.c_ms_per_element:
            merged[op]["c_ms_per_element"] = float(f"{model.c_ms_per_element * scale:.7g}")
        provenance[op] = {"kind": "transferred", "from": name, "scale": float(f"{scale:.6g}"),
                          "text": f"transferred from {other.device.get('name')} x{scale:.3g} ({REFERENCE_OP} ratio)"}
    summary = {"from": name, "reference_op": REFERENCE_OP, "scale": float(f"{scale:.6g}"),
               "invoke_overhead_removed_ms": overhead, "ops": sorted(provenance)}
    return dict(sorted(merged.items())), provenance, summary
