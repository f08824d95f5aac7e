"""Accuracy of the imported phone tables, and what device_tables/pixel1.json predicts for standard mobile models.

1. ProxylessNAS (Pixel 1): leave-one-block-out error of the joint fit, for each parameter sharing.
2. once-for-all (Note10): fit on 16 resolutions, error on every block of the held-out one, for each of the 17.
3. The resolution model (profiler.latency.table: a, b interpolated in log pixels, clamped): OFA fitted at 224 px only,
   every block of the 16 other resolutions predicted; ProxylessNAS with each interior level (56, 28, 14) left out, its
   blocks predicted by interpolating between the remaining levels.
4. The 7 reference models (keras.applications, weights=None, classifier_activation=None, converted through
   profiler.measure.model_builder.convert_function) priced with device_tables/pixel1.json against their published
   Pixel 1 latencies (profiler.latency.importers.reference_models; never fitted to them).
5. --coverage full|representative: every model of the grid priced without error (count of ops per provenance).

Usage: taskset -c 1 nice -n 5 .venv/bin/python benchmarks/import_tables.py [--shared-data DIR] [--cache DIR]
       [--coverage full]
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from profiler.latency.importers import ofa, proxylessnas
from profiler.latency.importers.joint_fit import SHARINGS, fit, held_out_predictions, relative_errors
from profiler.latency.importers.reference_models import PIXEL1_PUBLISHED, convert, full_grid, representative_grid
from profiler.latency.table import LatencyTable, interpolate_log_size
from profiler.latency.tflite_reader import predict_model
from profiler.spec import flops

ROOT = Path(__file__).resolve().parents[1]


def _pct(values: list[float]) -> str:
    return (f"median {100 * np.median(values):.1f}%, p90 {100 * np.percentile(values, 90):.1f}%, "
            f"max {100 * np.max(values):.1f}% (n={len(values)})")


def proxylessnas_report(path: Path) -> list[str]:
    entries, _ = proxylessnas.read_entries(path)
    lines = ["ProxylessNAS Pixel 1, leave-one-block-out relative error per MBConv block:"]
    for sharing in SHARINGS.values():
        start = time.perf_counter()
        held = held_out_predictions(entries, sharing, lambda e: e.key, proxylessnas.OP_TIES)
        seconds = time.perf_counter() - start
        blocks = [(e, h) for e, h in zip(entries, held) if e.role == "block"]
        errors = relative_errors([e for e, _ in blocks], [h for _, h in blocks])
        lines.append(f"  {sharing.name:<22} {_pct(errors)}  [{seconds:.2f} s for all refits]")
    return lines


def ofa_report(directory: Path) -> list[str]:
    entries, _ = ofa.read_entries(directory)
    lines = ["OFA Note10, fit on 16 resolutions, relative error on every MBConv block of the held-out one:"]
    for sharing in SHARINGS.values():
        held = held_out_predictions(entries, sharing, lambda e: e.resolution, ofa.OP_TIES)
        per_resolution: dict[int, tuple[list, list]] = defaultdict(lambda: ([], []))
        for e, h in zip(entries, held):
            if e.role == "block":
                per_resolution[e.resolution][0].append(e)
                per_resolution[e.resolution][1].append(h)
        all_errors = []
        lines.append(f"  sharing {sharing.name}:")
        for resolution in sorted(per_resolution):
            errors = relative_errors(*per_resolution[resolution])
            all_errors += errors
            lines.append(f"    held out {resolution}: {_pct(errors)}")
        lines.append(f"    all held-out blocks: {_pct(all_errors)}")
    return lines


def _interpolated_predict(fitted, entry, resolution: int, levels: list[int]) -> float:
    """An entry priced with conv a, b interpolated in log size between the fitted levels' sizes (the table's
    resolution model), non-conv ops by the fit."""
    total = 0.0
    for spec in entry.convs:
        if spec.h == 1:
            a, b = fitted.conv_model(spec, resolution)
        else:
            points = []
            for k in levels:
                size = resolution // 2 ** k
                try:
                    a_k, b_k = fitted.conv_model(dataclasses.replace(spec, h=size, w=size), resolution)
                except KeyError:
                    continue
                points.append((math.log(size * size), a_k, b_k))
            a, b, _, _ = interpolate_log_size(sorted(points), math.log(spec.h * spec.w))
        total += a * flops(spec) / 1e6 + b
    for use in entry.ops:
        a, b = fitted.op_model(use.op)
        total += a * use.units + b
    return total


def resolution_model_report(latency: Path) -> list[str]:
    sharing = SHARINGS["dw-per-stride"]
    entries, _ = ofa.read_entries(latency / "ofa_note10")
    fitted = fit([e for e in entries if e.resolution == 224], sharing, ofa.OP_TIES)
    lines = ["Resolution model (a, b interpolated in log pixels between sizes, clamped outside):",
             "  OFA Note10 fitted at 224 px only, every MBConv block of the other 16 resolutions predicted:"]
    all_errors = []
    for mode in ("interpolated", "same level"):
        errors = []
        for e in entries:
            if e.role == "block" and e.resolution != 224:
                p = (_interpolated_predict(fitted, e, 224, list(range(6))) if mode == "interpolated"
                     else fitted.predict(e))
                errors.append(abs(p - e.mean_ms) / e.mean_ms)
        lines.append(f"    {mode:<13} {_pct(errors)}")
        all_errors = all_errors or errors
    entries, _ = proxylessnas.read_entries(latency / "proxylessnas_pixel1_mobile_trim.yaml")
    lines.append("  ProxylessNAS Pixel 1, each interior level left out (every block with a conv there), predicted by "
                 "interpolating between the other levels:")
    pooled = []
    for k in (2, 3, 4):
        size = 224 // 2 ** k
        touches = [e for e in entries if any(s.h == size for s in e.convs)]
        kept = [e for e in entries if e not in touches]
        fitted = fit(kept, sharing, proxylessnas.OP_TIES)
        errors = [abs(_interpolated_predict(fitted, e, 224, [j for j in range(6) if j != k]) - e.mean_ms) / e.mean_ms
                  for e in touches if e.role == "block"]
        pooled += errors
        lines.append(f"    level {size}x{size} left out: {_pct(errors)}")
    lines.append(f"    all left-out blocks: {_pct(pooled)}")
    return lines


def reference_report(cache: Path, table_path: Path) -> list[str]:
    table = LatencyTable.load(table_path)
    paths = convert([p.model for p in PIXEL1_PUBLISHED], cache)
    lines = [f"Published Pixel 1 whole-model latencies vs `fgnas-table predict {table_path.relative_to(ROOT)} MODEL` "
             f"(validation only, never fitted):",
             f"  {'model':<24} {'predicted':>10} {'ops only':>9} {'published':>10} {'error':>7}"]
    within = 0
    for published, path in zip(PIXEL1_PUBLISHED, paths):
        prediction = predict_model(table, path)
        error = prediction.total_ms / published.ms - 1
        within += abs(error) <= 0.10
        lines.append(f"  {published.model.name:<24} {prediction.total_ms:8.1f} ms "
                     f"{prediction.total_ms - prediction.network_ms:6.1f} ms {published.ms:7.1f} ms "
                     f"{100 * error:+6.1f}%")
    lines.append(f"  {within} of {len(PIXEL1_PUBLISHED)} within +-10% (ops only: the sum of isolated-block prices, "
                 f"before the in-network factor)")
    return lines


def coverage_report(cache: Path, table_path: Path, which: str) -> list[str]:
    table = LatencyTable.load(table_path)
    models = full_grid() if which == "full" else representative_grid()
    start = time.perf_counter()
    paths = convert(models, cache)
    converted = time.perf_counter() - start
    provenance: Counter = Counter()
    failed = []
    for model, path in zip(models, paths):
        try:
            for op in predict_model(table, path).ops:
                provenance[op.provenance.split(" x")[0]] += 1
        except Exception as exc:  # report every failure, not just the first
            failed.append(f"{model.name}: {exc}")
    lines = [f"Coverage ({which} grid, {len(models)} Keras models, {converted:.0f} s to convert or find): "
             f"{len(models) - len(failed)} priced, {len(failed)} failed; ops by provenance: "
             + ", ".join(f"{k} {v}" for k, v in provenance.most_common())]
    return lines + [f"  FAILED {f}" for f in failed]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", type=Path,
                        default=Path(os.environ.get("FGNAS_SHARED_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "benchmarks")
    parser.add_argument("--table", type=Path, default=ROOT / "device_tables" / "pixel1.json")
    parser.add_argument("--skip-models", action="store_true", help="skip the TensorFlow conversions")
    parser.add_argument("--coverage", choices=("full", "representative"), default="representative")
    args = parser.parse_args()
    latency = args.shared_data / "latency"
    if not latency.is_dir():
        print(f"{latency} is absent: nothing to benchmark", file=sys.stderr)
        return 2
    lines = proxylessnas_report(latency / "proxylessnas_pixel1_mobile_trim.yaml")
    lines += ofa_report(latency / "ofa_note10")
    lines += resolution_model_report(latency)
    if not args.skip_models:
        lines += reference_report(args.cache / "keras", args.table)
        lines += coverage_report(args.cache / "keras", args.table, args.coverage)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
