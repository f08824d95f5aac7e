"""fgnas-export RUN_DIR --device host [--out DIR] [--quantize dynamic|int8] [--round-channels]: a thin argparse layer
over export.pipeline.export_run."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from export.tflite import QUANTIZE_MODES
from profiler.cli_parser import OneLineParser
from profiler.errors import FgnasError
from profiler.measure.devices import add_device_arguments, add_timing_arguments, device_options, timing_settings

if TYPE_CHECKING:
    from search.arch import Arch


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="fgnas-export", description="Export a searched network to TFLite and ONNX, "
                                "physically pruned; check parity; compare predicted and measured latency.")
    p.add_argument("run_dir", type=Path, help="the --out directory of a finished fgnas-search run")
    add_device_arguments(p, default="host", device_help="where to measure latency (host, or a phone); 'none' skips it")
    p.add_argument("--out", type=Path, help="output directory (default RUN_DIR/export)")
    p.add_argument("--table", type=Path, help="latency table (default: the one the search used, else "
                                              "device_tables/DEVICE.json when it exists)")
    p.add_argument("--data", help="data set for parity, accuracy and int8 calibration (default: the run's)")
    p.add_argument("--quantize", choices=QUANTIZE_MODES, help="also write a post-training quantized .tflite")
    p.add_argument("--round-channels", action="store_true",
                   help="snap each operation's channels to the table's tile where that lowers predicted latency")
    p.add_argument("--parity-samples", type=int, default=64, help="inputs compared across runtimes")
    p.add_argument("--eval-samples", type=int, default=1000, help="validation images for the accuracy check")
    add_timing_arguments(p)
    p.add_argument("--allow-other-device", action="store_true",
                   help="compare with a --table profiled on another device (or whose reference probe runs at another "
                        "speed here) anyway; the warning is recorded in export_report.json")
    return p


def _table(args: argparse.Namespace, arch: Arch) -> Path | None:
    """--table when given; else the table the search priced with, only while its content hash is the one arch.json
    recorded (export.assembly.search_table: otherwise one line naming it, exit 2); else, for a run searched without a
    latency table, device_tables/DEVICE.json when it exists."""
    from export.assembly import search_table

    if args.table:
        return args.table
    recorded = search_table(arch)
    if recorded is not None:
        return recorded
    default = Path("device_tables") / f"{args.device}.json"
    return default if default.exists() else None


def _timing(args: argparse.Namespace) -> dict:
    """The timing options given (checked now, before any work); the device supplies the rest."""
    timing_settings(args)
    return {k: v for k, v in (("runs", args.runs), ("warmup", args.warmup), ("threads", args.threads)) if v is not None}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from export.pipeline import ExportOptions, export_run
    from export.report import format_latency
    from export.run import load_run

    try:
        run = load_run(args.run_dir)
        device = None if args.device == "none" else args.device
        options = ExportOptions(args.out or args.run_dir / "export", device, _table(args, run.arch), args.data,
                                args.quantize, args.parity_samples, args.eval_samples,
                                _timing(args), args.round_channels,
                                device_options(args), args.allow_other_device)
        result = export_run(run, options, log=lambda m: print(f"fgnas-export: {m}", file=sys.stderr, flush=True))
    except FgnasError as exc:  # DeviceFault included: the exception carries its exit code (2 input, 3 device)
        print(f"fgnas-export: {exc}", file=sys.stderr)
        return exc.exit_code
    ops = ", ".join(f"{k} {v}" for k, v in result.inventory.items())
    print(f"wrote {', '.join(result.files.values())} to {result.out} (TFLite ops: {ops})")
    for p in result.parity:
        print(f"parity {p.name:<16} max|diff| {p.max_abs_diff:.2e} (output scale {p.output_scale:.3g}), top-1 "
              f"agreement {p.top1_agreement * 100:.1f}% on {p.samples} inputs"
              + ("" if p.enforced else " (quantized: reported, not enforced)"))
    acc = result.accuracy
    print("accuracy on " + f"{acc['samples']} validation images: "
          + ", ".join(f"{k} {v * 100:.2f}%" for k, v in acc.items() if k != "samples"))
    if result.rounding:
        r = result.rounding
        print(f"rounded channels: predicted {r['before']['latency_ms']:.3f} -> {r['after']['latency_ms']:.3f} ms, "
              f"accuracy {r['before']['accuracy'] * 100:.2f}% -> {r['after']['accuracy'] * 100:.2f}%")
    if result.latency:
        print(format_latency(result.latency))
    print(f"report: {result.report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
