"""Accuracy of the imported phone tables, and what pixel1.json predicts for MobileNetV2 1.0-224.

1. ProxylessNAS (Pixel 1): leave-one-block-out error of the joint fit, for each parameter sharing.
2. once-for-all (Note10): fit on 16 resolutions, error on every block of the held-out one, for each of the 17.
3. MobileNetV2 1.0-224 (keras.applications, weights=None, classifier_activation=None, converted with
   from_concrete_functions through profiler.model_builder.convert_function), priced by `fgnas-table predict` with
   device_tables/pixel1.json, against the published Pixel 1 figure of 75 ms (MnasNet; FGNAS Table 4).

Usage: taskset -c 1 nice -n 5 .venv/bin/python benchmarks/import_tables.py [--shared-data DIR] [--cache DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from profiler.importers import ofa, proxylessnas
from profiler.importers.joint_fit import SHARINGS, held_out_predictions, relative_errors

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_MOBILENETV2_PIXEL1_MS = 75.0


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


def mobilenetv2_tflite(cache: Path) -> Path:
    path = cache / "mobilenetv2_1.0_224_no_softmax.tflite"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        script = ("import sys, tensorflow as tf\n"
                  "from profiler.model_builder import convert_function\n"
                  "m = tf.keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), alpha=1.0, "
                  "classifier_activation=None)\n"
                  "open(sys.argv[1], 'wb').write(convert_function(lambda x: m(x, training=False), [(1, 224, 224, 3)]))\n")
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, cwd=ROOT)
    return path


def mobilenetv2_report(cache: Path) -> list[str]:
    model = mobilenetv2_tflite(cache)
    command = [str(Path(sys.executable).with_name("fgnas-table")), "predict", "device_tables/pixel1.json", str(model),
               "--json"]
    out = subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True).stdout
    prediction = json.loads(out)
    by_op: dict[str, float] = defaultdict(float)
    fallbacks = 0
    for op in prediction["ops"]:
        by_op[op["op"]] += op["ms"]
        fallbacks += op["fallback"] is not None
    total = sum(by_op.values())
    lines = [f"MobileNetV2 1.0-224 on Pixel 1 via `{' '.join(command[1:3])} MODEL`: predicted {total:.1f} ms "
             f"vs published {PUBLISHED_MOBILENETV2_PIXEL1_MS:.0f} ms ({100 * (total / PUBLISHED_MOBILENETV2_PIXEL1_MS - 1):+.1f}%); "
             f"{len(prediction['ops'])} ops, {fallbacks} priced by a fallback"]
    lines += [f"  {op:<22} {ms:7.2f} ms" for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", type=Path,
                        default=Path(os.environ.get("FGNAS_SHARED_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "benchmarks")
    parser.add_argument("--skip-mobilenetv2", action="store_true", help="skip the TensorFlow conversion")
    args = parser.parse_args()
    latency = args.shared_data / "latency"
    if not latency.is_dir():
        print(f"{latency} is absent: nothing to benchmark", file=sys.stderr)
        return 2
    lines = proxylessnas_report(latency / "proxylessnas_pixel1_mobile_trim.yaml")
    lines += ofa_report(latency / "ofa_note10")
    if not args.skip_mobilenetv2:
        lines += mobilenetv2_report(args.cache)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
