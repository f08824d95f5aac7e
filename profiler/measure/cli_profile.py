"""`fgnas-profile`: sweep a space on one or more devices, append to the raw log, write the latency table."""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from profiler.cli_parser import OneLineParser
from profiler.errors import DeviceFault, FgnasError
from profiler.measure.devices import (
    add_device_arguments,
    add_timing_arguments,
    create_device,
    device_options,
    timing_settings,
)
from profiler.measure.devices.base import identity_name
from profiler.measure.model_builder import DEFAULT_CACHE_DIR
from profiler.measure.rawlog import RAW_LOG_SUFFIX, RESUME_ADVICE, RawLog, raw_log_path, read_records
from profiler.measure.spaces import SPACES, Space, get_space
from profiler.measure.sweep import (
    NETWORK_MEASUREMENTS,
    PASS_GAP_S,
    PASSES,
    SweepOptions,
    SweepResult,
    measurement_settings,
    run_sweep,
)


@dataclass(frozen=True)
class ProfileOutcome:
    table_path: Path
    table_version: int
    sweep: SweepResult


def _csv(cast=str):
    def parse(text: str) -> tuple:
        try:
            return tuple(cast(v) for v in text.split(",") if v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="fgnas-profile", description="Measure conv and op latency on a device and write "
                                "a latency table (and its raw log beside it). Re-running the same command resumes.")
    add_device_arguments(p, farm=True)
    p.add_argument("--space", default="quick", help=f"sweep space: {', '.join(SPACES)} (default quick)")
    p.add_argument("--kernels", type=_csv(int), help="override the space's kernels, e.g. 1,3")
    p.add_argument("--strides", type=_csv(int), help="override the space's strides, e.g. 1,2")
    p.add_argument("--conv-types", type=_csv(), help="override: normal,depthwise")
    p.add_argument("--activations", type=_csv(), help="override: none,relu,relu6,prelu,tanh")
    p.add_argument("--resolutions", type=_csv(int), help="keep only these input sizes of the space, e.g. 8,4")
    p.add_argument("--ops", type=_csv(), help="override the non-conv ops measured (comma list, or 'none')")
    p.add_argument("--samples-per-condition", type=int, help="channel samples per condition")
    p.add_argument("--small-samples", type=int, help="probes per condition with 1..16 output (and input) channels "
                                                      "(default 2; they show the kernels' small tiles)")
    p.add_argument("--networks", type=int, help="calibration networks per family and size of the space (0: none); "
                                                "the table fits what ops cost more inside a network from them")
    add_timing_arguments(p)
    p.add_argument("--passes", type=int, default=PASSES,
                   help=f"measurements of every probe, each in its own pass over the sweep; the table keeps the "
                        f"lowest median (default {PASSES}; calibration networks get at least {NETWORK_MEASUREMENTS}, "
                        f"spread over the passes)")
    p.add_argument("--pass-gap", type=float, default=PASS_GAP_S,
                   help=f"least seconds from one pass's start to the next's, so a slow spell of the machine does not "
                        f"catch every pass of a probe (default {PASS_GAP_S:g})")
    p.add_argument("--out", type=Path, help="table path (default device_tables/IDENTITY.json, the device's name and "
                                             "CPU, e.g. host-amd-f26m2s1.json)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="where generated models are cached")
    p.add_argument("--seed", type=int, default=0, help="channel sampling and measurement order")
    return p


def make_space(args: argparse.Namespace) -> Space:
    space = get_space(args.space)
    resolutions = None
    if args.resolutions:
        known = {r.hw for r in space.resolutions}
        unknown = sorted(set(args.resolutions) - known)
        if unknown:
            raise FgnasError(f"space {space.name} has no resolution {unknown}: choose from {sorted(known)}")
        resolutions = tuple(r for r in space.resolutions if r.hw in args.resolutions)
    ops = None if args.ops is None else tuple(op for op in args.ops if op != "none")
    networks = None if args.networks is None else tuple((f, hw, args.networks) for f, hw, _ in space.networks)
    return space.with_overrides(networks=networks, kernels=args.kernels, strides=args.strides,
                                conv_types=args.conv_types,
                                activations=args.activations, samples_per_condition=args.samples_per_condition,
                                small_samples=args.small_samples,
                                resolutions=resolutions, ops=ops)


def default_table_path(info: dict) -> Path:
    """Where a table of the device `info` describes goes when --out is not given: named after its identity, so that a
    table never passes for another machine's by its file name."""
    return Path("device_tables") / f"{identity_name(info)}.json"


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".fgnas-write-test-"):
            pass
    except OSError as exc:
        raise FgnasError(f"cannot write to {directory}: {exc.strerror}; choose a writable --out") from None


def _check_out(out: Path) -> None:
    """Refuse an --out that would destroy measurements or fail only after the sweep: a raw log's name (the table
    would overwrite that log), a directory, or an existing file that is not a latency table."""
    if out.name.endswith(RAW_LOG_SUFFIX):
        raise FgnasError(f"--out {out} names a raw log, not a table (the table would overwrite it): pass the table's "
                         f"path, e.g. --out {out.with_name(out.name[:-len(RAW_LOG_SUFFIX)] + '.json')}")
    if out.is_dir():
        raise FgnasError(f"--out {out} is a directory: pass the table's file path, e.g. --out {out / 'host.json'}")
    if raw_log_path(out).is_dir():
        raise FgnasError(f"the raw log {raw_log_path(out)} would be a directory: choose another --out")
    if out.exists():
        try:
            doc = json.loads(out.read_bytes())
        except (OSError, ValueError):
            doc = None
        if not isinstance(doc, dict) or "schema_version" not in doc:
            raise FgnasError(f"--out {out} exists and is not a latency table: choose another --out (or move it away)")


def _check_numbers(args: argparse.Namespace) -> None:
    if args.passes < 1:
        raise FgnasError("--passes must be at least 1")
    if not (math.isfinite(args.pass_gap) and args.pass_gap >= 0):
        raise FgnasError(f"--pass-gap must be a finite number of seconds, at least 0; got {args.pass_gap:g}")


def _check_table_settings(out: Path, records: list[dict], settings: dict) -> None:
    """A log written before records carried their settings: compare with the settings of the table beside it (the
    last sweep that finished), the only record of how those measurements were taken."""
    if not records or all("settings" in r for r in records):
        return
    try:
        previous = json.loads(out.read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    differ = {k: (previous[k], v) for k, v in settings.items() if k in previous and previous[k] != v}
    if differ:
        text = ", ".join(f"{k}={old} (now {new})" for k, (old, new) in sorted(differ.items()))
        raise FgnasError(f"{raw_log_path(out)} was measured with {text} (the settings of {out}): {RESUME_ADVICE}")


def _spaces_in_log(out: Path, space: str) -> list[str]:
    """Every space swept into this table's raw log: this one and those the table at `out` already lists (the raw log
    resumes across spaces, so `imagenet` then `cifar` into one --out makes one table of both)."""
    try:
        previous = json.loads(out.read_text(encoding="utf-8"))["settings"]
        spaces = previous.get("spaces") or [previous["space"]]
    except (OSError, ValueError, KeyError, TypeError):
        spaces = []
    return sorted({*spaces, space})


def profile(args: argparse.Namespace) -> ProfileOutcome:
    """Run the sweep the arguments describe and write the table; FgnasError/DeviceFault/KeyboardInterrupt pass up."""
    space = make_space(args)
    timing_settings(args)
    _check_numbers(args)
    options = device_options(args)
    with ExitStack() as stack:
        def connect() -> list:
            return [stack.enter_context(create_device(args.device, **options, **({"serial": s} if s else {})))
                    for s in (args.serial or [None])]

        # Without --out the table is named after the device (device_tables/host-amd-f26m2s1.json), which only the
        # device can say; with --out the log's lock comes first, so that a second sweep on it stops before it
        # connects to (and loads) a device.
        devices = None if args.out else connect()
        out = args.out or default_table_path(devices[0].info())
        _check_out(out)
        _check_writable(out.parent)
        log = stack.enter_context(RawLog(raw_log_path(out)))
        try:
            devices = devices or connect()
            settings = timing_settings(args, devices[0].default_settings)
            _check_table_settings(out, read_records(log.path), measurement_settings(settings))
        except BaseException:
            if log.created and log.path.stat().st_size == 0:
                log.path.unlink()  # the empty log this failed run created; nothing was measured
            raise
        result = run_sweep(space.probes(args.seed), devices, log, settings,
                           SweepOptions(seed=args.seed, reference=space.reference, cache_dir=args.cache_dir,
                                        progress=True, passes=args.passes, pass_gap_s=args.pass_gap))
        info = devices[0].info()
        if len(devices) > 1:
            info["farm"] = [d.info() for d in devices]
    from profiler.latency.table import LatencyTable  # scikit-learn: only needed once the measurements are in

    log_path = raw_log_path(out)
    table_settings = {**settings.to_dict(), "space": space.name, "spaces": _spaces_in_log(out, space.name),
                      "seed": args.seed, "passes": args.passes}
    table = LatencyTable.build(read_records(log_path), info, table_settings, log_path, drift=result.drift)
    table.save(out)
    return ProfileOutcome(out, table.table_version, result)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    resume = "resume with: fgnas-profile " + shlex.join(argv)
    try:
        outcome = profile(args)
    except DeviceFault as exc:
        print(f"fgnas-profile: {exc}", file=sys.stderr)
        print(resume, file=sys.stderr)
        return exc.exit_code
    except FgnasError as exc:
        print(f"fgnas-profile: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"fgnas-profile: interrupted; every finished measurement is in the raw log; {resume}", file=sys.stderr)
        return 130
    s = outcome.sweep
    drift = " DRIFT beyond bound, see table 'drift'" if s.drift.get("drifted") else ""
    failed = f", failed devices: {', '.join(s.failed_devices)}" if s.failed_devices else ""
    print(f"measured {s.measured}, skipped {s.skipped} already in the log, re-measured {s.remeasured} for "
          f"spread{failed}{drift}; wrote {outcome.table_path} (table_version {outcome.table_version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
