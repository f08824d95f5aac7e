"""Exported random searched architectures: latency measured on the host against the latency table's prediction.

Each architecture is a backbone with random gates drawn from its search space (export.sampling.random_searched),
physically pruned and converted exactly as fgnas-export does; the table prices every op of the written .tflite
(profiler.latency.tflite_reader via export.report.price_model) and the host device times it as the sweep does (the
lowest median of interleaved passes, profiler.measure.interleaved). Reports the share of models predicted within +-10%
(target: >= 80%) and the mean absolute percentage error.

    .venv/bin/python benchmarks/export_latency.py --backbone resnet20   # the paper's CIFAR-10 backbone, 20 archs
    .venv/bin/python benchmarks/export_latency.py --backbone digits     # the demo's tiny digits network
    .venv/bin/python benchmarks/export_latency.py --count 3             # smoke run

Writes OUT/export_latency_<device>_<backbone>.json (every row) and prints the summary.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from export.files import atomic_write_json  # noqa: E402
from export.prune import prune  # noqa: E402
from export.report import price_model  # noqa: E402
from export.sampling import random_searched  # noqa: E402
from export.tflite import convert_plan  # noqa: E402
from profiler.errors import FgnasError  # noqa: E402
from profiler.latency.table import LatencyTable  # noqa: E402
from profiler.measure.devices import create_device  # noqa: E402
from profiler.measure.devices.base import BenchmarkSettings  # noqa: E402
from profiler.measure.interleaved import lowest_of_passes  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", type=Path, default=REPO / "device_tables" / "host-amd-f26m2s1.json")
    p.add_argument("--device", default="host")
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--backbone", default="digits")
    p.add_argument("--search-space", default="kernels", help="the search space the random gates are drawn from")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--max-ops", type=int, default=2, help="operations kept per layer, at most")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--passes", type=int, default=3,
                   help="interleaved passes over all models; each keeps its lowest median, as the sweep does")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args()
    try:
        table = LatencyTable.load(args.table)
    except FgnasError as exc:
        print(f"export_latency: {exc}", file=sys.stderr)
        return 2
    settings = BenchmarkSettings(runs=args.runs, warmup=args.warmup)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, create_device(args.device) as device:
        plans, paths = [], []
        for i in range(args.count):
            net = random_searched(args.backbone, args.seed + i, max_ops=args.max_ops, search_space=args.search_space,
                                  width=args.width)
            plans.append(prune(net.to_arch(), net.state_dict()))
            paths.append(Path(tmp) / f"arch_{i}.tflite")
            paths[-1].write_bytes(convert_plan(plans[-1]))
        measured_ms = lowest_of_passes(device, paths, settings, args.passes)
        for i, (plan, path, measured) in enumerate(zip(plans, paths, measured_ms)):
            priced = price_model(table, path)
            error = None if priced.unpriced else (priced.ms - measured) / measured
            rows.append({"seed": args.seed + i, "channels": [layer.out_channels for layer in plan.layers],
                         "convs": sum(len(layer.ops) for layer in plan.layers), "predicted_ms": priced.ms,
                         "measured_ms": measured, "error": error, "unpriced": list(priced.unpriced)})
            shown = f"{error * 100:+6.1f}%" if error is not None else f"unpriced {','.join(priced.unpriced)}"
            print(f"arch {i:2d}: {rows[-1]['convs']:3d} convs  predicted {priced.ms:7.3f} ms  measured "
                  f"{measured:7.3f} ms  {shown}", flush=True)
        info = device.info()
    priced_rows = [r for r in rows if r["error"] is not None]
    within = sum(abs(r["error"]) <= 0.10 for r in priced_rows)
    mape = sum(abs(r["error"]) for r in priced_rows) / max(1, len(priced_rows)) * 100
    summary = {"device": info, "table": str(args.table), "table_version": table.table_version,
               "settings": vars(args) | {"table": str(args.table), "out": str(args.out)},
               "priced": len(priced_rows), "count": len(rows), "within_10pct": within, "mape_pct": mape, "rows": rows}
    out = atomic_write_json(args.out / f"export_latency_{args.device}_{args.backbone}.json", summary)
    print(f"{within}/{len(priced_rows)} priced models within +-10% (target >= 80%), MAPE {mape:.1f}%; "
          f"{len(rows) - len(priced_rows)} had ops the table cannot price; rows in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
