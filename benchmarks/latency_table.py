"""How well a latency table predicts fresh measurements on this computer.

(a) random convs NOT in the table's sweep (the table's conditions, random channel counts in the range of the spaces
    it was swept on, --spaces, default imagenet and cifar), and (b) whole networks of varied, pruned-looking widths
    (VGG-like and MobileNetV2-like stacks built with the TF converter, with the pools, residual ADDs, MEAN,
    FULLY_CONNECTED and SOFTMAX such networks have).
    The networks come from the families the sweep calibrates its in-network cost on (profiler.measure.networks), drawn
    from this benchmark's seed, so none of them is one of the table's calibration networks.
Each is measured on the host device (LiteRT, pinned, the table's threads/runs/warmup) as the sweep measures: the
lowest median of several interleaved passes over all models, the passes a minute apart
(profiler.measure.interleaved), and predicted with the table's selected fit (tile-aware convs; networks with the
table's in-network cost) and with the paper's affine fit (networks: the sum of their ops). Reports the share within
+-10% and the MAPE.

    chrt -f 20 .venv/bin/python benchmarks/latency_table.py --table device_tables/host-amd-f26m2s1.json
    chrt -f 20 .venv/bin/python benchmarks/latency_table.py --table device_tables/host-amd-f26m2s1.json \
        --quick --gap 0  # smoke

Writes OUT/latency_table_<device>.json (every row) and .md (the summary, also printed).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from profiler.errors import FgnasError  # noqa: E402
from profiler.latency.table import LatencyTable  # noqa: E402
from profiler.latency.tflite_reader import conv_text, predict_model  # noqa: E402
from profiler.measure.devices import create_device  # noqa: E402
from profiler.measure.devices.base import BenchmarkSettings  # noqa: E402
from profiler.measure.interleaved import lowest_of_passes  # noqa: E402
from profiler.measure.model_builder import build_model  # noqa: E402
from profiler.measure.networks import GENERATORS, NetProbe  # noqa: E402
from profiler.measure.rawlog import read_records  # noqa: E402
from profiler.measure.spaces import SPACES  # noqa: E402
from profiler.spec import ConvSpec, flops  # noqa: E402

MAX_MFLOPS = 1200.0  # as the sweep: bigger convs take seconds each and add nothing new
WITHIN = 0.10


@dataclass(frozen=True)
class Row:
    kind: str  # "conv" | "net"
    name: str
    measured_ms: float
    selected_ms: float | None
    affine_ms: float | None
    note: str | None

    def error(self, fit: str) -> float | None:
        predicted = self.selected_ms if fit == "selected" else self.affine_ms
        return None if predicted is None else predicted / self.measured_ms - 1


# ---- (a) random convs --------------------------------------------------------------------------------------------

def _channel_range(hw: int, spaces: tuple[str, ...]) -> tuple[int, int]:
    """The channel range the table's sweep spaces use at this size (widest over those that have it): the benchmark
    asks how well the table interpolates between its measurements, not how it extrapolates beyond them."""
    ranges = [(r.min_channels, r.max_channels) for name in spaces for r in SPACES[name].resolutions if r.hw == hw]
    if not ranges:
        raise FgnasError(f"no space of {', '.join(spaces)} has input size {hw}: name the table's spaces with --spaces")
    return min(lo for lo, _ in ranges), max(hi for _, hi in ranges)


def _log_uniform(rng: random.Random, lo: int, hi: int) -> int:
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def random_convs(table: LatencyTable, n: int, rng: random.Random, spaces: tuple[str, ...], records: list[dict]
                 ) -> list[ConvSpec]:
    """n random convs of the table's own conditions, none measured in its sweep (`records`: its raw log)."""
    swept = {r["id"] for r in records}
    keys = sorted((k for k in table.conditions if k.conv_type in ("normal", "depthwise")), key=str)
    specs: dict[ConvSpec, None] = {}
    while len(specs) < n:
        key = rng.choice(keys)
        lo, hi = _channel_range(key.h, spaces)
        cout = _log_uniform(rng, lo, hi)
        if key.conv_type == "depthwise":
            spec = ConvSpec.depthwise(key.h, key.w, cout, key.kernel, key.stride, key.activation)
        else:
            cin = 3 if key.h >= 224 else _log_uniform(rng, lo, hi)
            spec = ConvSpec(key.h, key.w, cin, cout, key.kernel, key.stride, 1, key.activation)
        while flops(spec) / 1e6 > MAX_MFLOPS:
            spec = spec.with_channels(max(1, int(spec.cin * 0.8)) if spec.cin > 3 else 3, max(1, int(spec.cout * 0.8)))
        if spec.config_hash() not in swept:
            specs[spec] = None
    return list(specs)


# ---- (b) whole networks ------------------------------------------------------------------------------------------

def random_nets(table: LatencyTable, n: int, rng: random.Random, quick: bool) -> list[NetProbe]:
    """VGG-like (32 px) and MobileNetV2-like (32 px, and 224 px when the table has it) networks of the families the
    sweep calibrates on (profiler.measure.networks), drawn from this benchmark's seed: none is a calibration network."""
    sizes = sorted({k.h for k in table.conditions})
    big = [hw for hw in (224,) if hw in sizes and not quick]
    nets = []
    for i in range(n):
        family = "vgg" if i % 2 == 0 else "mbv2"
        hw = big[0] if big and family == "mbv2" and i % 4 == 3 else 32
        nets.append(GENERATORS[family](rng, hw))
    return nets


# ---- measuring and reporting -------------------------------------------------------------------------------------

def conv_rows(table: LatencyTable, specs: list[ConvSpec], measured: list[float]) -> list[Row]:
    rows = []
    for spec, ms in zip(specs, measured):
        p = table.predict(spec)
        rows.append(Row("conv", conv_text(spec), ms, p.ms, table.predict_ms(spec, "affine"), p.fallback))
    return rows


def net_rows(table: LatencyTable, nets: list[NetProbe], paths: list[Path], measured: list[float]) -> list[Row]:
    """The selected fit prices a network as the table does (its ops, and the NetworkModel's in-network cost where
    the table has one); the paper's affine as the sum of its ops' affine prices alone."""
    rows = []
    for net, path, ms in zip(nets, paths, measured):
        try:
            selected = predict_model(table, path)
            paper = predict_model(table, path, "affine")
            fallbacks = sorted({p.fallback.split(":")[0] for p in selected.ops if p.fallback})
            note = ("fallbacks: " + "; ".join(fallbacks)) if fallbacks else None
            rows.append(Row("net", net.name, ms, selected.total_ms, paper.total_ms - paper.network_ms, note))
        except FgnasError as exc:
            rows.append(Row("net", net.name, ms, None, None, f"cannot price: {exc}"))
    return rows


def reference_probe(table: LatencyTable, records: list[dict]) -> tuple[ConvSpec, float] | None:
    """The sweep's reference conv and its median over the sweep (table `drift`; `records`: its raw log), to tell how
    fast this machine runs now against when it was profiled: the benchmark's errors move with that."""
    drift = table.doc.get("drift") or {}
    if not drift.get("reference_id"):
        return None
    record = next((r for r in records if r["id"] == drift["reference_id"]), None)
    medians = [d["median_ms"] for d in drift.get("devices", {}).values()]
    return (ConvSpec.from_dict(record["spec"]), medians[0]) if record and medians else None


def summary(rows: list[Row], fit: str) -> dict:
    errors = np.array([abs(e) for e in (r.error(fit) for r in rows) if e is not None])
    if len(errors) == 0:
        return {"n": 0, "unpriced": len(rows), "within_10": None, "mape": None}
    return {"n": int(len(errors)), "unpriced": len(rows) - int(len(errors)),
            "within_10": float(np.mean(errors <= WITHIN)), "mape": float(np.mean(errors)),
            "p90_error": float(np.percentile(errors, 90))}


def markdown(report: dict) -> str:
    lines = [f"Table `{report['table']}` (device {report['device']}, table_version {report['table_version']}); "
             f"{report['settings']}; {report['elapsed_s']:.0f} s; command: `{report['command']}`", "",
             "| set | fit | priced | within +-10% | MAPE | 90th pct error |", "|---|---|---|---|---|---|"]
    for kind, label in (("conv", "random convs"), ("net", "whole networks")):
        for fit in ("selected", "affine"):
            s = report["summary"][kind][fit]
            name = "tile-aware (selected)" if fit == "selected" else "paper's affine"
            if s["n"] == 0:
                lines.append(f"| {label} | {name} | 0 of {s['unpriced']} | - | - | - |")
                continue
            lines.append(f"| {label} | {name} | {s['n']} of {s['n'] + s['unpriced']} | "
                         f"{100 * s['within_10']:.0f}% | {100 * s['mape']:.1f}% | {100 * s['p90_error']:.1f}% |")
    ref = report.get("reference")
    if ref:
        lines += ["", f"Reference conv {ref['spec']}: {ref['now_ms']:.4f} ms now, {ref['at_profiling_ms']:.4f} ms "
                      f"(median) while profiling ({100 * ref['change']:+.1f}%): the machine's speed against the "
                      f"table's"]
    worst = sorted((r for r in report["rows"] if r["selected_error"] is not None),
                   key=lambda r: -abs(r["selected_error"]))[:5]
    lines += ["", "Worst tile-aware predictions:"]
    lines += [f"- {r['kind']} {r['name']}: measured {r['measured_ms']:.3f} ms, predicted {r['selected_ms']:.3f} ms "
              f"({100 * r['selected_error']:+.1f}%){' [' + r['note'] + ']' if r['note'] else ''}" for r in worst]
    unpriced = [r for r in report["rows"] if r["selected_error"] is None]
    lines += [f"- UNPRICED {r['kind']} {r['name']}: {r['note']}" for r in unpriced]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    started = time.time()
    table = LatencyTable.load(args.table)
    n_convs = args.convs if args.convs is not None else (10 if args.quick else 100)
    n_nets = args.nets if args.nets is not None else (4 if args.quick else 20)
    rng = random.Random(args.seed)
    s = table.doc["settings"]
    spaces = args.spaces or tuple(s.get("spaces") or [s.get("space")])
    unknown = [name for name in spaces if name not in SPACES]
    if unknown:
        raise FgnasError(f"unknown space {', '.join(map(str, unknown))}: name the table's spaces with --spaces "
                         f"(from {', '.join(SPACES)})")
    records = read_records(table.raw_log_file) if table.raw_log_file else []
    specs = random_convs(table, n_convs, rng, spaces, records)
    nets = random_nets(table, n_nets, rng, args.quick)
    settings = BenchmarkSettings(threads=s.get("threads", 1), runs=args.runs or s.get("runs", 30),
                                 warmup=args.warmup or s.get("warmup", 5))
    conv_paths = [build_model(spec, args.cache_dir) for spec in specs]
    net_paths = [build_model(net, args.cache_dir) for net in nets]
    reference = reference_probe(table, records)
    extra = [build_model(reference[0], args.cache_dir)] if reference else []
    with create_device("host", cpu=args.cpu) as device:
        measured = lowest_of_passes(device, conv_paths + net_paths + extra, settings, args.passes, args.gap)
    rows = conv_rows(table, specs, measured[:len(specs)]) + net_rows(table, nets, net_paths,
                                                                     measured[len(specs):len(specs) + len(nets)])
    speed = None
    if reference:
        speed = {"spec": conv_text(reference[0]), "at_profiling_ms": reference[1], "now_ms": measured[-1],
                 "change": measured[-1] / reference[1] - 1}
    report = {
        "table": str(args.table), "device": table.device.get("name"), "table_version": table.table_version,
        "table_hash": table.content_hash, "host": device.info(),
        "settings": f"threads {settings.threads}, runs {settings.runs}, warmup {settings.warmup}, "
                    f"lowest median of {args.passes} interleaved passes {args.gap:.0f} s apart",
        "command": " ".join(["benchmarks/latency_table.py", *sys.argv[1:]]),
        "elapsed_s": time.time() - started,
        "reference": speed,
        "summary": {kind: {fit: summary([r for r in rows if r.kind == kind], fit) for fit in ("selected", "affine")}
                    for kind in ("conv", "net")},
        "rows": [{"kind": r.kind, "name": r.name, "measured_ms": r.measured_ms, "selected_ms": r.selected_ms,
                  "affine_ms": r.affine_ms, "selected_error": r.error("selected"), "affine_error": r.error("affine"),
                  "note": r.note} for r in rows],
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=REPO / "device_tables" / "host-amd-f26m2s1.json")
    parser.add_argument("--spaces", type=lambda t: tuple(t.split(",")),
                        help="the spaces the table was swept on, whose channel ranges the random convs use "
                             "(default: the table's settings.spaces)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 convs, 4 small networks")
    parser.add_argument("--convs", type=int, help="random convs to measure (default 100)")
    parser.add_argument("--nets", type=int, help="whole networks to measure (default 20)")
    parser.add_argument("--runs", type=int, help="timed runs per model (default: the table's)")
    parser.add_argument("--warmup", type=int, help="warmup runs per model (default: the table's)")
    parser.add_argument("--passes", type=int, default=5,
                        help="interleaved passes over all models; each keeps its lowest median (default 5)")
    parser.add_argument("--gap", type=float, default=60.0,
                        help="seconds between passes, so they do not all fall into one slow spell (default 60)")
    parser.add_argument("--cpu", type=int, default=0, help="core to pin the measurements to")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".cache" / "bench")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    try:
        report = run(args)
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / f"latency_table_{report['device']}"
        stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
        text = markdown(report)
        stem.with_suffix(".md").write_text(text + "\n")
    except (FgnasError, OSError) as exc:
        print(f"latency_table: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
