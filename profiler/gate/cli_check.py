"""`fgnas-check`: the on-device latency gate for CI. Exit 0 pass, 1 regression or over budget, 2 bad input, 3 device."""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import replace
from pathlib import Path

from profiler.cli_parser import OneLineParser
from profiler.errors import FgnasError
from profiler.gate.check import CheckOptions, run_check
from profiler.gate.check_stats import INTERVAL_METHODS
from profiler.latency.device_check import check_table_device
from profiler.measure.devices import (
    add_device_arguments,
    add_timing_arguments,
    create_device,
    device_options,
    timing_settings,
)
from profiler.measure.devices.base import BenchmarkSettings
from profiler.measure.model_builder import DEFAULT_CACHE_DIR
from profiler.measure.reference_model import REFERENCE_SPEC
from profiler.spec import ConvSpec

PROG = "fgnas-check"
_DURATION_UNITS = {"ms": 1.0, "us": 1e-3, "s": 1e3}  # to milliseconds
_NUMBER_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z%]*)\s*$")


def parse_duration_ms(text: str) -> float:
    """`53ms` -> 53.0, `800us` -> 0.8, `0.1s` -> 100.0."""
    m = _NUMBER_UNIT.match(text)
    if not m or m.group(2) not in _DURATION_UNITS:
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: write a number and a unit, e.g. 53ms, 800us, 0.1s")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def parse_fraction(text: str) -> float:
    """`5%` -> 0.05; a bare number is already a fraction (`0.05`)."""
    m = _NUMBER_UNIT.match(text)
    if not m or m.group(2) not in ("", "%"):
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: write a percentage such as 5% (or 0.05)")
    return float(m.group(1)) / (100.0 if m.group(2) == "%" else 1.0)


def parse_conv(text: str) -> ConvSpec:
    try:
        return ConvSpec.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="Measure a .tflite model on a device and fail when it is over "
                                "a latency budget or slower than a stored baseline. Exit codes: 0 pass, 1 regression "
                                "or over budget, 2 usage or input error, 3 device fault.")
    p.add_argument("model", type=Path, help="the .tflite model to check")
    add_device_arguments(p)
    p.add_argument("--budget", type=parse_duration_ms, help="latency budget, e.g. 53ms: pass when the upper end of "
                   "the latency's confidence interval is within it")
    p.add_argument("--baseline", type=Path, help="baseline JSON: compare the model/reference ratio with its")
    p.add_argument("--tolerance", type=parse_fraction, default=0.05, help="allowed slowdown against the baseline, "
                   "e.g. 5%% (default): fail when the whole confidence interval of the change is above it")
    p.add_argument("--update-baseline", action="store_true", help="measure and write --baseline (no comparison)")
    p.add_argument("--pairs", type=int, default=CheckOptions.pairs, help="interleaved model/reference measurements "
                   f"(default {CheckOptions.pairs})")
    p.add_argument("--max-pairs", type=int, default=CheckOptions.max_pairs, help="measure up to this many pairs when "
                   f"the first --pairs leave the baseline verdict open (default {CheckOptions.max_pairs})")
    add_timing_arguments(p)
    p.add_argument("--confidence", type=float, default=CheckOptions.confidence, help="interval level (default 0.95)")
    p.add_argument("--interval", choices=sorted(INTERVAL_METHODS), default=CheckOptions.interval,
                   help="t (mean, Student/Welch) or bootstrap (median, seeded)")
    p.add_argument("--reference", type=parse_conv, default=REFERENCE_SPEC,
                   help="reference conv for a new baseline, HxWxCIN:COUT:kK:sS[:dw][:act] (default 28x28x64:64:k3:s1:"
                   "relu); a stored baseline names its own")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="where the reference model is cached")
    p.add_argument("--table", type=Path, help="the latency table the --budget came from (a search's target): "
                   "refused, exit 2, when it was profiled on another device (profiler.latency.device_check)")
    p.add_argument("--allow-other-device", action="store_true",
                   help="check anyway against a --table of another device; the warning goes into the reports")
    p.add_argument("--junit", type=Path, help="write a JUnit XML report here")
    p.add_argument("--json", type=Path, help="write a JSON report here")
    return p


def options_from(args: argparse.Namespace, settings: BenchmarkSettings) -> CheckOptions:
    return CheckOptions(budget_ms=args.budget, baseline=args.baseline, tolerance=args.tolerance,
                        update_baseline=args.update_baseline, pairs=args.pairs, max_pairs=args.max_pairs,
                        confidence=args.confidence, interval=args.interval, settings=settings,
                        reference=args.reference, cache_dir=args.cache_dir)


def _check_report_paths(args: argparse.Namespace) -> None:
    """Before measuring: a report path that is a directory would fail only after the whole check."""
    for flag, path in (("--junit", args.junit), ("--json", args.json)):
        if path is not None and path.is_dir():
            raise FgnasError(f"{flag} {path} is a directory: pass a file path, e.g. {path / 'report.xml'}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        _check_report_paths(args)
    except FgnasError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        return _check(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was decided", file=sys.stderr)
        return 130
    except Exception as exc:  # a CI gate's exit 1 means "regression": any other failure must not read as one
        print(f"{PROG}: unexpected {type(exc).__name__}: {exc} (a bug: please report it)", file=sys.stderr)
        return 2


def _check(args: argparse.Namespace) -> int:
    from profiler.gate import check_report

    try:
        options = options_from(args, timing_settings(args))
        options.validate()
        from profiler.latency.table import LatencyTable

        table = LatencyTable.load(args.table) if args.table is not None else None
        with create_device(args.device, **device_options(args)) as device:
            options = replace(options, settings=timing_settings(args, device.default_settings))
            device_check = check_table_device(table, device, args.allow_other_device) if table is not None else None
            result = run_check(device, args.model, options)
        if device_check is not None:
            notes = result.notes + ((f"warning: {device_check.warning}",) if device_check.warning else ())
            result = replace(result, notes=notes, device_check=device_check.to_dict())
    except FgnasError as exc:  # DeviceFault included: its exit code is 3
        print(f"{PROG}: {exc}", file=sys.stderr)
        try:
            if args.junit:
                check_report.write_junit_error(args.model, args.device, exc, args.junit)
            if args.json:
                check_report.write_json_error(args.model, exc, exc.exit_code, args.json)
        except FgnasError as report_exc:
            print(f"{PROG}: {report_exc}", file=sys.stderr)
        return exc.exit_code
    print("\n".join(check_report.summary_lines(result)))
    try:
        if args.junit:
            check_report.write_junit(result, args.junit)
        if args.json:
            check_report.write_json(result, args.json)
    except FgnasError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
