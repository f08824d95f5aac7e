"""How often does `fgnas-check --baseline` fail an unchanged model, and catch a 5%, 10% or 15% slower one, on host?

Records one baseline for the demo-like model (as CI would keep one), then runs the relative check `--trials` times
for the unchanged model and for three variants with more channels, in a shuffled order per trial so that the
machine's load weighs on all of them alike. Each variant's true slowdown is measured first with many interleaved
variant/base pairs. Prints a Markdown table (docs/benchmarks.md) and writes every verdict to --out as JSON.

    taskset -c 1 .venv/bin/python benchmarks/check_reliability.py --trials 20        # the acceptance run
    taskset -c 1 .venv/bin/python benchmarks/check_reliability.py --trials 3         # a quick look
"""
from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from profiler.atomic import atomic_write_text
from profiler.gate.check import CheckOptions, measure_pairs, run_check
from profiler.gate.check_stats import log_ratios
from profiler.gate.demo_model import BASE_CHANNELS, demo_model
from profiler.measure.devices import create_device
from profiler.measure.devices.base import BenchmarkSettings
from profiler.measure.model_builder import DEFAULT_CACHE_DIR

# Chosen on this machine (AMD EPYC, LiteRT 2.3.0, XNNPACK, 1 thread) for slowdowns near 5/10/15%; XNNPACK's channel
# tiling makes latency a step function of channels, so the true slowdown is re-measured on every run.
VARIANTS: dict[str, tuple[int, ...]] = {
    "unchanged": BASE_CHANNELS,
    "about 5% slower": (16, 32, 64, 144),
    "about 10% slower": (16, 32, 64, 176),
    "about 15% slower": (16, 32, 80, 128),
}


def true_slowdown(device, model: Path, base: Path, settings: BenchmarkSettings, pairs: int) -> float:
    """Median latency ratio of `model` to `base` over interleaved pairs, minus one."""
    run = measure_pairs(device, model, base, settings, pairs)
    return math.exp(statistics.median(log_ratios(run.model_ms, run.reference_ms))) - 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--pairs", type=int, default=CheckOptions.pairs, help="pairs per check")
    p.add_argument("--max-pairs", type=int, default=CheckOptions.max_pairs, help="pairs when the first are undecided")
    p.add_argument("--baseline-pairs", type=int, default=40)
    p.add_argument("--calibration-pairs", type=int, default=60)
    p.add_argument("--tolerance", type=float, default=0.05)
    p.add_argument("--interval", default=CheckOptions.interval)
    p.add_argument("--runs", type=int, default=BenchmarkSettings.runs)
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    p.add_argument("--out", type=Path, default=Path("runs/check_reliability.json"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    settings = BenchmarkSettings(runs=args.runs)
    models = {name: demo_model(channels, args.cache_dir) for name, channels in VARIANTS.items()}
    started = time.time()
    with create_device("host") as device, tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline.json"
        run_check(device, models["unchanged"], CheckOptions(baseline=baseline, update_baseline=True,
                                                            pairs=args.baseline_pairs, settings=settings,
                                                            interval=args.interval, cache_dir=args.cache_dir))
        truth = {name: true_slowdown(device, path, models["unchanged"], settings, args.calibration_pairs)
                 for name, path in models.items() if name != "unchanged"}
        truth["unchanged"] = 0.0
        options = CheckOptions(baseline=baseline, tolerance=args.tolerance, pairs=args.pairs, max_pairs=args.max_pairs,
                           settings=settings,
                               interval=args.interval, cache_dir=args.cache_dir)
        rng = random.Random(args.seed)
        verdicts: dict[str, list[dict]] = {name: [] for name in models}
        for trial in range(args.trials):
            for name in rng.sample(list(models), len(models)):
                result = run_check(device, models[name], options)
                change = result.outcomes[0].details["change"]
                verdicts[name].append({"trial": trial, "failed": not result.passed, "change": change["estimate"],
                                       "low": change["low"], "high": change["high"],
                                       "seconds": result.run.seconds})
            print(f"trial {trial + 1}/{args.trials} done", file=sys.stderr, flush=True)
        info = device.info()

    print(f"\nHost {info['cpu_model']}, LiteRT {info['runtime_version']}; tolerance {args.tolerance:.0%}, "
          f"{args.pairs} pairs per check, up to {args.max_pairs} when undecided ({args.interval} interval), "
          f"baseline of {args.baseline_pairs} pairs; "
          f"{args.trials} trials; {time.time() - started:.0f} s in all\n")
    print("| model | channels | true slowdown | failed | mean change (min..max) | s per check |")
    print("|---|---|---|---|---|---|")
    for name, rows in verdicts.items():
        failed = sum(r["failed"] for r in rows)
        changes = [r["change"] for r in rows]
        print(f"| {name} | {'/'.join(map(str, VARIANTS[name]))} | {truth[name]:+.1%} | {failed}/{len(rows)} | "
              f"{statistics.fmean(changes):+.1%} ({min(changes):+.1%}..{max(changes):+.1%}) | "
              f"{statistics.fmean(r['seconds'] for r in rows):.1f} |")
    atomic_write_text(args.out, json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "device": info,
                                            "true_slowdown": truth, "verdicts": verdicts}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
