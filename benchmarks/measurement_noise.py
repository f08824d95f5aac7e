"""How reproducible one measurement is on this computer, and how much interleaved passes help.

Times N convs of the table's own sweep in 2K passes over all of them (one fresh device; the first pass starts on a
machine that was idle), then compares two independent estimates of each conv's latency: one median against another
(passes 1 and 2), and the lowest of K medians (the odd passes) against the lowest of the other K (the even passes).
Also reports how much slower each pass ran than each conv's best, which shows a slow start.

    chrt -f 20 .venv/bin/python benchmarks/measurement_noise.py --table device_tables/host-amd-f26m2s1.json

Writes OUT/measurement_noise_<device>.json and prints the summary.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from profiler.errors import FgnasError  # noqa: E402
from profiler.latency.table import LatencyTable  # noqa: E402
from profiler.measure.devices import create_device  # noqa: E402
from profiler.measure.devices.base import BenchmarkSettings  # noqa: E402
from profiler.measure.model_builder import build_model  # noqa: E402
from profiler.measure.rawlog import read_records  # noqa: E402
from profiler.spec import ConvSpec  # noqa: E402


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    change = np.abs(b / a - 1)
    return {"within_5": float(np.mean(change <= 0.05)), "within_10": float(np.mean(change <= 0.10)),
            "mean_abs_change": float(np.mean(change))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", type=Path, default=REPO / "device_tables" / "host-amd-f26m2s1.json")
    p.add_argument("--convs", type=int, default=60)
    p.add_argument("--k", type=int, default=3, help="passes per estimate (2K passes in all)")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--cache-dir", type=Path, default=REPO / ".cache" / "models")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args()
    try:
        table = LatencyTable.load(args.table)
        if table.raw_log_file is None or not table.raw_log_file.is_file():
            raise FgnasError(f"{args.table} has no raw log here: this benchmark re-times the convs it was swept on")
        records = {r["id"]: r for r in read_records(table.raw_log_file) if r["kind"] == "conv"}
    except FgnasError as exc:
        print(f"measurement_noise: {exc}", file=sys.stderr)
        return 2
    picked = random.Random(args.seed).sample(sorted(records), min(args.convs, len(records)))
    paths = [build_model(ConvSpec.from_dict(records[i]["spec"]), args.cache_dir) for i in picked]
    settings = BenchmarkSettings(runs=args.runs, warmup=args.warmup)
    medians = np.zeros((2 * args.k, len(paths)))
    with create_device("host") as device:
        for k in range(2 * args.k):
            medians[k] = [device.benchmark(path, settings).median_ms for path in paths]
        info = device.info()
    report = {
        "device": info, "table": str(args.table), "settings": vars(args) | {"table": str(args.table),
                                                                          "cache_dir": str(args.cache_dir),
                                                                          "out": str(args.out)},
        "one_median_vs_another": agreement(medians[0], medians[1]),
        f"lowest_of_{args.k}_vs_lowest_of_{args.k}": agreement(medians[0::2].min(0), medians[1::2].min(0)),
        "pass_slowdown_vs_best": [float(v) for v in np.median(medians / medians.min(0) - 1, axis=1)],
        "medians_ms": medians.tolist(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"measurement_noise_{info['name']}.json").write_text(json.dumps(report, indent=1) + "\n")
    for name in ("one_median_vs_another", f"lowest_of_{args.k}_vs_lowest_of_{args.k}"):
        r = report[name]
        print(f"{name}: within +-5% {r['within_5']:.0%}, within +-10% {r['within_10']:.0%}, "
              f"mean |change| {r['mean_abs_change']:.1%}")
    print("median slowdown of each pass against each conv's best: "
          + ", ".join(f"{v:+.1%}" for v in report["pass_slowdown_vs_best"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
